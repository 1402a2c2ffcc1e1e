"""Running an axis: the `axis up` supervisor, live moves of agencies, hot reloads, the control socket."""
