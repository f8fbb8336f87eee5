package server

// SendFastServed reports how many sends the fast path answered
// (sendfast.go), for tests that tell the paths apart.
func SendFastServed() int64 { return sendFastServed.Load() }
