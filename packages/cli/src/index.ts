// @vmesh/cli: The vmesh command line and interactive shell
export {}
