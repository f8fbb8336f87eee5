package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// sseEvent is one dispatched Server-Sent Events block. Its slices belong to
// the sseReader and stay valid until its next call to Next.
type sseEvent struct {
	// ID is the last event ID seen on the stream so far (the SSE
	// lastEventId); IDSet says the block itself had an id field.
	ID    []byte
	IDSet bool
	// Event is the block's event type, empty for "message".
	Event []byte
	// Data is the block's data lines joined by "\n"; HasData says it had at
	// least one data field (a block with only an id has none).
	Data    []byte
	HasData bool
}

// sseReader parses Server-Sent Events incrementally from a bufio.Reader, as
// the WHATWG EventSource algorithm does: lines end in LF or CRLF (a lone CR
// is not treated as a line end), a line starting with ':' is a comment, "field:
// value" loses one space after the colon, a blank line dispatches the
// block. Unlike EventSource it also dispatches blocks that carry only an id
// or an event, so a caller sees the id-only block pushgate opens a stream
// with. It copies each field value once into buffers it reuses, so
// reading an event allocates nothing once the buffers have grown to the
// largest event.
type sseReader struct {
	r     *bufio.Reader
	long  []byte // a line longer than r's buffer, assembled
	id    []byte
	event []byte
	data  []byte
}

func newSSEReader(r *bufio.Reader) *sseReader { return &sseReader{r: r} }

// errSSETruncated says the stream ended inside a block.
var errSSETruncated = errors.New("sse stream ended inside an event")

// Next returns the next block that has an id, event or data field; comment
// and blank-only blocks are skipped. At the end of the stream it returns
// io.EOF (errSSETruncated when a block was left incomplete, which
// EventSource discards), else the reader's error.
func (p *sseReader) Next() (sseEvent, error) {
	var ev sseEvent
	p.event = p.event[:0]
	p.data = p.data[:0]
	partial := false // the block has a field
	for {
		line, err := p.readLine()
		if err != nil {
			if err == io.EOF && (partial || len(line) > 0) {
				return sseEvent{}, errSSETruncated
			}
			return sseEvent{}, err
		}
		if len(line) == 0 {
			if !partial {
				continue
			}
			ev.ID = p.id
			ev.Event = p.event
			ev.Data = p.data
			return ev, nil
		}
		if line[0] == ':' {
			continue
		}
		field, value := line, []byte(nil)
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			field, value = line[:i], line[i+1:]
			if len(value) > 0 && value[0] == ' ' {
				value = value[1:]
			}
		}
		switch string(field) {
		case "data":
			if ev.HasData {
				p.data = append(p.data, '\n')
			}
			p.data = append(p.data, value...)
			ev.HasData = true
			partial = true
		case "id":
			if bytes.IndexByte(value, 0) < 0 { // as EventSource: an id with NUL is ignored
				p.id = append(p.id[:0], value...)
				ev.IDSet = true
				partial = true
			}
		case "event":
			p.event = append(p.event[:0], value...)
			partial = true
		}
		// retry and unknown fields are ignored
	}
}

// readLine returns the next line without its LF or CRLF. The line is valid
// until the next read. At the end of the stream it returns what is left of
// an unterminated line with io.EOF.
func (p *sseReader) readLine() ([]byte, error) {
	line, err := p.r.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		p.long = append(p.long[:0], line...)
		for err == bufio.ErrBufferFull {
			line, err = p.r.ReadSlice('\n')
			p.long = append(p.long, line...)
		}
		line = p.long
	}
	if err != nil {
		return line, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}
