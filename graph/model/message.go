package model

import (
	"encoding/json"
	"time"
)

// Message is the GraphQL Message (gqlgen.yml binds it here instead of
// generating it) with what its resolvers need besides its fields.
type Message struct {
	Channel string `json:"channel"`
	// The message's offset in its channel, in decimal: contiguous, increasing, never reused.
	ID        string          `json:"id"`
	Event     *string         `json:"event,omitempty"`
	Data      json.RawMessage `json:"data"`
	CreatedAt time.Time       `json:"createdAt"`
	// Resumes right after this message. In a feed it covers every channel of the
	// subscription; elsewhere it names this message's channel only.
	Cursor string `json:"cursor"`
	// The outcome of the message's WeChat notification (send with notify); null without one.
	Notification *Notification `json:"notification,omitempty"`

	// Tag is the stored message's pubsub tag: the notification resolver
	// reads it to know, from the message's first delivery, that it was
	// sent with notify.
	Tag string `json:"-"`
}

func (Message) IsFeedEvent() {}
