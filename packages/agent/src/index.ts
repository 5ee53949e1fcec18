// @vmesh/agent: The vmesh agent: wires the parts together and serves the control API
export {}
