package graph

import (
	"strconv"

	"github.com/pushgate/pushgate/graph/model"
	"github.com/pushgate/pushgate/pubsub"
)

// MessageOf returns the GraphQL Message for m with cursor.
func MessageOf(m *pubsub.Message, cursor string) *model.Message {
	out := &model.Message{
		Channel:   m.Channel,
		ID:        strconv.FormatUint(m.Offset, 10),
		Data:      m.Data,
		CreatedAt: m.Time,
		Cursor:    cursor,
		Tag:       m.Tag,
	}
	if m.Event != "" {
		ev := m.Event
		out.Event = &ev
	}
	return out
}

// channelCursor is the cursor naming one channel at p: what history edges
// and sent messages carry, and what resumes a feed of that channel.
func channelCursor(channel string, p pubsub.Position) string {
	return pubsub.NewCursor(map[string]pubsub.Position{channel: p}).String()
}

// storedMessage returns the GraphQL Message for a message outside a feed:
// its cursor names its channel only.
func storedMessage(m *pubsub.Message) *model.Message {
	return MessageOf(m, channelCursor(m.Channel, m.Position()))
}

// feedEvent returns the GraphQL FeedEvent for ev.
func feedEvent(ev pubsub.Event) model.FeedEvent {
	cursor := ev.Cursor.String()
	if ev.Reset != nil {
		return &model.Reset{Channel: ev.Reset.Channel, Reason: string(ev.Reset.Reason), Cursor: cursor}
	}
	return MessageOf(ev.Message, cursor)
}

// channelOf returns the GraphQL Channel for st.
func channelOf(st pubsub.ChannelState) *model.Channel {
	out := &model.Channel{
		Name:     st.Channel,
		Epoch:    st.Epoch,
		Retained: st.Retained,
		Cursor:   channelCursor(st.Channel, st.Position()),
	}
	if st.Top > 0 {
		id := strconv.FormatUint(st.Top, 10)
		out.LastID = &id
	}
	if st.Retained > 0 {
		id := strconv.FormatUint(st.First, 10)
		out.FirstID = &id
		t := st.LastTime
		out.LastMessageAt = &t
	}
	return out
}
