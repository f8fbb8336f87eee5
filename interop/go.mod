module github.com/pushgate/pushgate/interop

// This directory holds the Node.js interop suite (make interop); its own
// go.mod keeps node_modules out of the Go module.

go 1.26
