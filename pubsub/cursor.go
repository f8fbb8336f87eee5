package pubsub

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// MaxCursorLength bounds the encoded length of a cursor a client may present.
const MaxCursorLength = 8192

const cursorVersion = 1

// Cursor names a stream position for each channel of a subscription. It is
// immutable. Its encoding (String) is opaque, URL-safe and canonical: one
// cursor has exactly one encoding, and ParseCursor accepts nothing else.
type Cursor struct {
	ps   []ChannelPosition // sorted by channel, unique
	text string            // the encoding, when made with it (soloCursor)
}

// soloCursor is the cursor of channel alone at p, encoded once: the hub
// makes one per message, which every subscription whose cursor holds that
// channel alone (most of them) takes as it is.
func soloCursor(channel string, p Position) *Cursor {
	c := Cursor{ps: []ChannelPosition{{Channel: channel, Position: p}}}
	c.text = c.String()
	return &c
}

// ChannelPosition is one channel's position inside a Cursor.
type ChannelPosition struct {
	Channel string
	Position
}

// NewCursor builds a cursor from positions. It panics on an invalid channel
// name or epoch: callers pass positions that came from the store.
func NewCursor(positions map[string]Position) Cursor {
	ps := make([]ChannelPosition, 0, len(positions))
	for ch, p := range positions {
		if !ValidChannel(ch) || !validEpoch(p.Epoch) {
			panic(fmt.Sprintf("pubsub: invalid cursor position %q %q", ch, p.Epoch))
		}
		ps = append(ps, ChannelPosition{Channel: ch, Position: p})
	}
	slices.SortFunc(ps, func(a, b ChannelPosition) int { return strings.Compare(a.Channel, b.Channel) })
	return Cursor{ps: ps}
}

// IsZero reports whether the cursor names no channel.
func (c Cursor) IsZero() bool { return len(c.ps) == 0 }

// Positions returns the cursor's positions, sorted by channel.
func (c Cursor) Positions() []ChannelPosition { return slices.Clone(c.ps) }

// Position returns the position the cursor holds for channel.
func (c Cursor) Position(channel string) (Position, bool) {
	i, ok := slices.BinarySearchFunc(c.ps, channel, func(p ChannelPosition, ch string) int {
		return strings.Compare(p.Channel, ch)
	})
	if !ok {
		return Position{}, false
	}
	return c.ps[i].Position, true
}

// only reports whether c holds no channel but channel: c.With(channel, p)
// is then channel alone at p.
func (c Cursor) only(channel string) bool {
	return len(c.ps) == 0 || len(c.ps) == 1 && c.ps[0].Channel == channel
}

// With returns a copy of c with channel at p.
func (c Cursor) With(channel string, p Position) Cursor {
	i, ok := slices.BinarySearchFunc(c.ps, channel, func(p ChannelPosition, ch string) int {
		return strings.Compare(p.Channel, ch)
	})
	ps := make([]ChannelPosition, len(c.ps), len(c.ps)+1)
	copy(ps, c.ps)
	if ok {
		ps[i].Position = p
	} else {
		ps = slices.Insert(ps, i, ChannelPosition{Channel: channel, Position: p})
	}
	return Cursor{ps: ps}
}

// String returns the cursor's opaque encoding ("" for the zero cursor).
func (c Cursor) String() string {
	if len(c.ps) == 0 || c.text != "" {
		return c.text
	}
	return base64.RawURLEncoding.EncodeToString(c.appendBinary(nil))
}

// AppendText appends the encoding to b without an intermediate string.
func (c Cursor) AppendText(b []byte) ([]byte, error) {
	if len(c.ps) == 0 || c.text != "" {
		return append(b, c.text...), nil
	}
	var buf [128]byte // most cursors fit: no allocation per event
	return base64.RawURLEncoding.AppendEncode(b, c.appendBinary(buf[:0])), nil
}

func (c Cursor) appendBinary(b []byte) []byte {
	b = append(b, cursorVersion)
	b = binary.AppendUvarint(b, uint64(len(c.ps)))
	for _, p := range c.ps {
		b = binary.AppendUvarint(b, uint64(len(p.Channel)))
		b = append(b, p.Channel...)
		b = binary.AppendUvarint(b, uint64(len(p.Epoch)))
		b = append(b, p.Epoch...)
		b = binary.AppendUvarint(b, p.Offset)
	}
	return b
}

// MarshalJSON encodes the cursor as a JSON string.
func (c Cursor) MarshalJSON() ([]byte, error) { return json.Marshal(c.String()) }

// ParseCursor decodes a cursor. It is strict: anything that is not exactly
// the canonical encoding of a valid cursor (valid channel names in ascending
// order without repeats, valid epochs, offset 0 with an empty epoch, at most
// MaxChannelsPerSubscription channels) is rejected with ErrInvalidCursor.
// The empty string is the zero cursor.
func ParseCursor(s string) (Cursor, error) {
	if s == "" {
		return Cursor{}, nil
	}
	if len(s) > MaxCursorLength {
		return Cursor{}, fmt.Errorf("%w: longer than %d characters", ErrInvalidCursor, MaxCursorLength)
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil {
		return Cursor{}, fmt.Errorf("%w: not base64url", ErrInvalidCursor)
	}
	r := bytes.NewReader(raw)
	fail := func(what string) (Cursor, error) {
		return Cursor{}, fmt.Errorf("%w: %s", ErrInvalidCursor, what)
	}
	v, err := r.ReadByte()
	if err != nil || v != cursorVersion {
		return fail("unknown version")
	}
	n, err := binary.ReadUvarint(r)
	if err != nil || n == 0 || n > MaxChannelsPerSubscription {
		return fail("bad channel count")
	}
	readString := func(max int) (string, bool) {
		l, err := binary.ReadUvarint(r)
		if err != nil || l > uint64(max) || l > uint64(r.Len()) {
			return "", false
		}
		buf := make([]byte, l)
		_, _ = r.Read(buf)
		return string(buf), true
	}
	ps := make([]ChannelPosition, 0, n)
	for i := uint64(0); i < n; i++ {
		ch, ok := readString(maxChannelLength)
		if !ok || !ValidChannel(ch) {
			return fail("bad channel name")
		}
		if i > 0 && ch <= ps[i-1].Channel {
			return fail("channels not in canonical order")
		}
		epoch, ok := readString(maxEpochLength)
		if !ok || !validEpoch(epoch) {
			return fail("bad epoch")
		}
		off, err := binary.ReadUvarint(r)
		if err != nil {
			return fail("bad offset")
		}
		if epoch == "" && off != 0 {
			return fail("offset without epoch")
		}
		ps = append(ps, ChannelPosition{Channel: ch, Position: Position{Epoch: epoch, Offset: off}})
	}
	if r.Len() != 0 {
		return fail("trailing bytes")
	}
	c := Cursor{ps: ps}
	// Uvarints have several encodings of one number; accept only the
	// shortest, so equal cursors are equal strings.
	if c.String() != s {
		return fail("not canonical")
	}
	return c, nil
}

const (
	maxChannelLength = 128
	maxEventLength   = 64
	maxEpochLength   = 32
	maxIdemKeyLength = 128
)

// ValidChannel reports whether name is a valid channel name:
// [A-Za-z0-9_:.@-]{1,128}, and not "user:" (see ChannelProblem).
func ValidChannel(name string) bool {
	return validName(name, maxChannelLength) && name != userNamespace
}

// userNamespace is the user namespace's prefix: user:<id> is the channel of
// one user, whom the server lets alone read it. "user:" with an empty id
// names no user, so no reader could be told apart as its owner: it is not
// a channel.
const userNamespace = "user:"

// ChannelProblem says why name is not a valid channel, for an error
// message ("" when it is valid).
func ChannelProblem(name string) string {
	switch {
	case !validName(name, maxChannelLength):
		return fmt.Sprintf("%q must match [A-Za-z0-9_:.@-]{1,128}", name)
	case name == userNamespace:
		return fmt.Sprintf("%q names no user: a user channel is user:<id> with a non-empty id", name)
	}
	return ""
}

// channelError is ErrInvalidChannel for name, saying why.
func channelError(name string) error {
	return fmt.Errorf("%w: %s", ErrInvalidChannel, ChannelProblem(name))
}

// ValidEvent reports whether name is a valid event name:
// [A-Za-z0-9_:.@-]{1,64}.
func ValidEvent(name string) bool { return validName(name, maxEventLength) }

func validName(s string, max int) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '_', c == ':', c == '.', c == '@', c == '-':
		default:
			return false
		}
	}
	return true
}

// validEpoch: [0-9a-z]{0,32}; empty means "no epoch yet".
func validEpoch(s string) bool {
	if len(s) > maxEpochLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z') {
			return false
		}
	}
	return true
}

func validIdempotencyKey(s string) bool {
	if len(s) > maxIdemKeyLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return false
		}
	}
	return true
}

// ValidateChannels checks a subscription's channel list: 1..32 valid,
// distinct names.
func ValidateChannels(channels []string) error {
	if len(channels) == 0 {
		return fmt.Errorf("%w: at least one channel is required", ErrInvalidChannel)
	}
	if len(channels) > MaxChannelsPerSubscription {
		return fmt.Errorf("%w: %d channels, at most %d", ErrTooManyChannels, len(channels), MaxChannelsPerSubscription)
	}
	seen := make(map[string]struct{}, len(channels))
	for _, ch := range channels {
		if !ValidChannel(ch) {
			return channelError(ch)
		}
		if _, dup := seen[ch]; dup {
			return fmt.Errorf("%w: %q is named twice", ErrInvalidChannel, ch)
		}
		seen[ch] = struct{}{}
	}
	return nil
}

// ValidatePublish checks req as Publish does, without appending: callers
// that publish several messages validate them all first.
func ValidatePublish(req PublishRequest) error { return validatePublish(&req) }

// validatePublish checks req and compacts its data in place.
func validatePublish(req *PublishRequest) error {
	if !ValidChannel(req.Channel) {
		return channelError(req.Channel)
	}
	if req.Event != "" && !ValidEvent(req.Event) {
		return fmt.Errorf("%w: %q must match [A-Za-z0-9_:.@-]{1,64}", ErrInvalidEvent, req.Event)
	}
	if req.Tag != "" && !ValidEvent(req.Tag) {
		return fmt.Errorf("%w: tag %q must match [A-Za-z0-9_:.@-]{1,64}", ErrInvalidEvent, req.Tag)
	}
	if !validIdempotencyKey(req.IdempotencyKey) {
		return fmt.Errorf("%w: at most %d bytes without control characters", ErrInvalidIdempotencyKey, maxIdemKeyLength)
	}
	data, err := compactData(req.Data) // checks it, too
	if err != nil {
		return err
	}
	req.Data = data
	return nil
}
