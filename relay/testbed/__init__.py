"""The topology as local processes: launcher, status, demo."""
