package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// sseEvent is one dispatched Server-Sent Events block. Its slices belong to
// the sseParser and stay valid until it is fed again.
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

// sseParser parses Server-Sent Events from the bytes it is fed, as they
// come off the socket, as the WHATWG EventSource algorithm does: lines end
// in LF or CRLF (a lone CR is not treated as a line end), a line starting
// with ':' is a comment, "field: value" loses one space after the colon, a
// blank line dispatches the block. Unlike EventSource it also dispatches
// blocks that carry only an id or an event, so a caller sees the id-only
// block pushgate opens a stream with. It copies each field value once into
// buffers it reuses, so parsing an event allocates nothing once the
// buffers have grown to the largest event.
type sseParser struct {
	line    []byte // a line cut by the end of what was fed, so far
	id      []byte
	event   []byte
	data    []byte
	ev      sseEvent // the block so far: IDSet, HasData
	partial bool     // the block has a field
}

// errSSETruncated says the stream ended inside a block.
var errSSETruncated = errors.New("sse stream ended inside an event")

// feed parses b, calling emit with each block that has an id, event or data
// field (comment and blank-only blocks are skipped); an error of emit stops
// the parse and is returned.
func (p *sseParser) feed(b []byte, emit func(*sseEvent) error) error {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			p.line = append(p.line, b...)
			return nil
		}
		line := b[:i]
		b = b[i+1:]
		if len(p.line) > 0 {
			p.line = append(p.line, line...)
			line = p.line
		}
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		err := p.endLine(line, emit)
		p.line = p.line[:0]
		if err != nil {
			return err
		}
	}
	return nil
}

// end is what the end of the stream means: io.EOF, or errSSETruncated when
// a block was left incomplete (EventSource discards it).
func (p *sseParser) end() error {
	if p.partial || len(p.line) > 0 {
		return errSSETruncated
	}
	return io.EOF
}

func (p *sseParser) endLine(line []byte, emit func(*sseEvent) error) error {
	if len(line) == 0 {
		if !p.partial {
			return nil
		}
		p.ev.ID, p.ev.Event, p.ev.Data = p.id, p.event, p.data
		err := emit(&p.ev)
		p.event, p.data = p.event[:0], p.data[:0]
		p.ev, p.partial = sseEvent{}, false
		return err
	}
	if line[0] == ':' {
		return nil
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
		if p.ev.HasData {
			p.data = append(p.data, '\n')
		}
		p.data = append(p.data, value...)
		p.ev.HasData = true
		p.partial = true
	case "id":
		if bytes.IndexByte(value, 0) < 0 { // as EventSource: an id with NUL is ignored
			p.id = append(p.id[:0], value...)
			p.ev.IDSet = true
			p.partial = true
		}
	case "event":
		p.event = append(p.event[:0], value...)
		p.partial = true
	}
	// retry and unknown fields are ignored
	return nil
}

// chunkedDecoder decodes an HTTP/1.1 chunked body from the bytes it is
// fed, as they come off the socket.
type chunkedDecoder struct {
	state chunkState
	left  int64  // of the chunk's data
	line  []byte // of the size line, so far
}

type chunkState uint8

const (
	chunkSize chunkState = iota // the size line
	chunkData                   // left bytes of data
	chunkCR                     // the CRLF after the data
	chunkLF
	chunkEnd // the last chunk was read
)

// maxChunkLine bounds a chunk's size line (with its extensions).
const maxChunkLine = 4096

// errChunkedEnd says the body's last chunk arrived: the stream ended.
var errChunkedEnd = fmt.Errorf("the chunked body ended: %w", io.EOF)

// feed decodes b, calling out with each piece of body data.
func (d *chunkedDecoder) feed(b []byte, out func([]byte) error) error {
	for len(b) > 0 {
		switch d.state {
		case chunkSize:
			i := bytes.IndexByte(b, '\n')
			if i < 0 {
				d.line = append(d.line, b...)
				if len(d.line) > maxChunkLine {
					return errors.New("chunked body: a size line over 4 KB")
				}
				return nil
			}
			line := append(d.line, b[:i]...)
			b = b[i+1:]
			d.line = line[:0]
			line = bytes.TrimSuffix(line, []byte("\r"))
			if j := bytes.IndexByte(line, ';'); j >= 0 {
				line = line[:j]
			}
			size, err := strconv.ParseInt(string(bytes.TrimSpace(line)), 16, 63)
			if err != nil || size < 0 {
				return fmt.Errorf("chunked body: bad size line %.40q", line)
			}
			if size == 0 {
				d.state = chunkEnd
				return errChunkedEnd
			}
			d.left, d.state = size, chunkData
		case chunkData:
			n := int(min(d.left, int64(len(b))))
			d.left -= int64(n)
			if d.left == 0 {
				d.state = chunkCR
			}
			if err := out(b[:n]); err != nil {
				return err
			}
			b = b[n:]
		case chunkCR, chunkLF:
			c := b[0]
			b = b[1:]
			switch {
			case d.state == chunkCR && c == '\r':
				d.state = chunkLF
			case c == '\n':
				d.state = chunkSize
			default:
				return fmt.Errorf("chunked body: %q after a chunk's data, want CRLF", c)
			}
		case chunkEnd:
			return errChunkedEnd
		}
	}
	return nil
}
