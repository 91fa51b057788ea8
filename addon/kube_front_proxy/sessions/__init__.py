"""Interactive sessions (exec, attach, port-forward): decoding, recording, their logs."""
