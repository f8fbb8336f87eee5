package graph

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/pushgate/pushgate/pubsub"
)

// publishRequests returns the requests of one send or broadcast, checked
// against each channel's message size and, when validate, valid in data,
// event and key (which Publish checks too, before it appends: a send alone
// needs no more), so that a broadcast, or a mutation of several sends,
// appends nothing when any part is wrong.
func (r *Resolver) publishRequests(channels []string, data json.RawMessage, event, idemKey *string, validate bool) ([]pubsub.PublishRequest, error) {
	for _, ch := range channels {
		if limit := r.maxMessageSize(ch); len(data) > limit {
			return nil, Errorf(CodePayloadTooLarge, "data: %d bytes is over the maximum message size of %d bytes for channel %q",
				len(data), limit, ch)
		}
	}
	req := pubsub.PublishRequest{Data: data}
	if event != nil {
		req.Event = *event
	}
	if idemKey != nil {
		req.IdempotencyKey = *idemKey
	}
	reqs := make([]pubsub.PublishRequest, len(channels))
	for i, ch := range channels {
		reqs[i] = req
		reqs[i].Channel = ch
	}
	// The requests differ only in their channel, which the caller
	// checked: one check stands for all.
	if validate {
		if err := pubsub.ValidatePublish(reqs[0]); err != nil {
			return nil, Classify(err)
		}
	}
	return reqs, nil
}

// publish appends reqs in order, and stops at the first failure: out holds
// what was appended before it. It is not abandoned when the client goes
// away: once a send reached the store its outcome must be known (a store
// that does I/O bounds each append: pubsub.Options.PublishTimeout).
func (r *Resolver) publish(ctx context.Context, reqs []pubsub.PublishRequest) (out []pubsub.PublishResult, err error) {
	ctx = context.WithoutCancel(ctx)
	out = make([]pubsub.PublishResult, 0, len(reqs))
	for i, req := range reqs {
		res, err := r.broker.Publish(ctx, req)
		if err != nil {
			if i == 0 {
				return nil, Classify(err)
			}
			e := *Classify(err)
			e.Message = fmt.Sprintf("stopped at channel %q after %d of %d channels (their messages are in the answer): %s; "+
				"retry with the same idempotencyKey to send the rest without duplicates", req.Channel, i, len(reqs), e.Message)
			return out, &e
		}
		out = append(out, res)
	}
	return out, nil
}

// maxMessageSize returns the bound of channel's data.
func (r *Resolver) maxMessageSize(channel string) int {
	if r.opts.MaxMessageSizeOf != nil {
		if n := r.opts.MaxMessageSizeOf(channel); n > 0 {
			return n
		}
	}
	return r.opts.MaxMessageSize
}
