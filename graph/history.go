package graph

import (
	"github.com/pushgate/pushgate/graph/model"
	"github.com/pushgate/pushgate/pubsub"
)

// historyRequest maps the connection arguments to a pubsub request:
// first/after page forward (oldest first), last/before page backward (newest
// first, returned oldest first). Neither first nor last: the newest
// DefaultPageSize, or the DefaultPageSize after `after`.
func historyRequest(channel string, first *int, after *string, last *int, before *string) (pubsub.HistoryRequest, error) {
	if first != nil && last != nil {
		return pubsub.HistoryRequest{}, badInput("history: first and last cannot be used together")
	}
	forward := first != nil || (last == nil && after != nil)
	req := pubsub.HistoryRequest{Limit: DefaultPageSize}
	for _, l := range []struct {
		name string
		v    *int
	}{{"first", first}, {"last", last}} {
		if l.v == nil {
			continue
		}
		if *l.v < 1 || *l.v > pubsub.MaxHistoryLimit {
			return pubsub.HistoryRequest{}, badInput("history: %s must be between 1 and %d, got %d",
				l.name, pubsub.MaxHistoryLimit, *l.v)
		}
		req.Limit = *l.v
	}
	if forward {
		if before != nil {
			return pubsub.HistoryRequest{}, badInput("history: before pages backward and needs last, not first")
		}
		var p pubsub.Position
		if after != nil {
			var err error
			if p, err = cursorPosition("after", *after, channel); err != nil {
				return pubsub.HistoryRequest{}, err
			}
		}
		req.After = &p
		return req, nil
	}
	if after != nil {
		return pubsub.HistoryRequest{}, badInput("history: after pages forward and needs first, not last")
	}
	if before != nil {
		p, err := cursorPosition("before", *before, channel)
		if err != nil {
			return pubsub.HistoryRequest{}, err
		}
		req.Before = &p
	}
	return req, nil
}

// connectionOf builds the connection for page, answering the page info from
// the channel state the page was read with.
func connectionOf(channel string, req pubsub.HistoryRequest, page pubsub.HistoryPage) *model.MessageConnection {
	conn := &model.MessageConnection{
		Nodes:    make([]*model.Message, len(page.Messages)),
		Edges:    make([]*model.MessageEdge, len(page.Messages)),
		PageInfo: &model.PageInfo{},
	}
	for i := range page.Messages {
		m := storedMessage(&page.Messages[i])
		conn.Nodes[i] = m
		conn.Edges[i] = &model.MessageEdge{Cursor: m.Cursor, Node: m}
	}
	if n := len(conn.Edges); n > 0 {
		conn.PageInfo.StartCursor = &conn.Edges[0].Cursor
		conn.PageInfo.EndCursor = &conn.Edges[n-1].Cursor
	}
	st := page.State
	retained := st.Retained > 0
	if req.After != nil {
		conn.PageInfo.HasNextPage = page.More
		// Retained messages at or before the `after` position.
		conn.PageInfo.HasPreviousPage = retained && req.After.Offset >= st.First
	} else {
		conn.PageInfo.HasPreviousPage = page.More
		// Retained messages at or after the `before` position.
		conn.PageInfo.HasNextPage = retained && req.Before != nil && req.Before.Offset <= st.Top
	}
	return conn
}

// cursorPosition parses a history cursor and returns its position for
// channel.
func cursorPosition(arg, s, channel string) (pubsub.Position, error) {
	c, err := pubsub.ParseCursor(s)
	if err != nil {
		return pubsub.Position{}, badInput("%s: %v", arg, err)
	}
	p, ok := c.Position(channel)
	if !ok {
		return pubsub.Position{}, badInput("%s: the cursor does not name channel %q", arg, channel)
	}
	return p, nil
}
