package graph

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/pushgate/pushgate/graph/model"
	"github.com/pushgate/pushgate/pubsub"
)

// A mutation with several sends (send and broadcast fields, by alias) is
// all or nothing in its checks, as a broadcast's channels are: every
// field's input is validated and authorized before any field appends
// (MutationCheck), and the sender's rate is taken for all of them at once
// (the server's operation limits). gqlgen runs a mutation's fields one
// after the other, so the check runs before the first of them, on the
// whole operation, and each field then publishes the requests checked for
// it. Once the store fails one field, the fields after it append nothing:
// what was appended is in the answer (each field is nullable), every field
// that was not has an error, and a retry with the same idempotencyKey
// sends only what is missing.

// prepared is one send or broadcast field: its requests, checked.
type prepared struct {
	reqs []pubsub.PublishRequest
}

// mutationRun is a checked mutation while its fields run, one at a time
// (gqlgen runs a mutation's fields serially, so no lock).
type mutationRun struct {
	fields map[string]*prepared // by response key (alias)
	// failed is the response key of the field the store failed, "" while
	// none has: the fields after it are not sent.
	failed string
}

// mutationRunKey names the run in its operation's stats.
const mutationRunKey = "pushgate.mutationRun"

// MutationCheck is the gqlgen extension that checks a mutation's sends as
// one before any runs. It is an OperationContextMutator, so a refusal
// answers the operation with that one error (at the refused field's path)
// and no data, like the other refusals before anything runs; it must come
// before mutators that take shares they give back only when the operation
// runs.
type MutationCheck struct{ r *Resolver }

var _ interface {
	graphql.HandlerExtension
	graphql.OperationContextMutator
} = MutationCheck{}

// NewMutationCheck returns the check of r's mutations.
func NewMutationCheck(r *Resolver) MutationCheck { return MutationCheck{r: r} }

func (MutationCheck) ExtensionName() string { return "PushgateMutationCheck" }

func (MutationCheck) Validate(graphql.ExecutableSchema) error { return nil }

// MutateOperationContext checks a mutation with two send or broadcast
// fields or more; one alone checks itself before it appends.
func (m MutationCheck) MutateOperationContext(ctx context.Context, oc *graphql.OperationContext) *gqlerror.Error {
	if oc.Operation == nil || oc.Operation.Operation != ast.Mutation {
		return nil
	}
	var fields []graphql.CollectedField
	for _, f := range graphql.CollectFields(oc, oc.Operation.SelectionSet, []string{"Mutation"}) {
		if f.Name == "send" || f.Name == "broadcast" {
			fields = append(fields, f)
		}
	}
	if len(fields) < 2 {
		return nil
	}
	ctx = graphql.WithOperationContext(ctx, oc)
	run := &mutationRun{fields: make(map[string]*prepared, len(fields))}
	for _, f := range fields {
		reqs, err := m.r.prepareField(ctx, oc, f)
		if err != nil {
			e := Classify(err)
			return &gqlerror.Error{
				Err:        e,
				Message:    fmt.Sprintf("%s (nothing of this mutation was sent: every send and broadcast is checked before any runs)", e.Message),
				Path:       ast.Path{ast.PathName(f.Alias)},
				Extensions: map[string]any{"code": e.Code},
			}
		}
		run.fields[f.Alias] = &prepared{reqs: reqs}
	}
	oc.Stats.SetExtension(mutationRunKey, run)
	return nil
}

// prepareField checks one send or broadcast field of oc, its arguments
// coerced as gqlgen will coerce them when the field runs.
func (r *Resolver) prepareField(ctx context.Context, oc *graphql.OperationContext, f graphql.CollectedField) ([]pubsub.PublishRequest, error) {
	ec := newExecutionContext(oc, &executableSchema{}, nil)
	rawArgs := f.ArgumentMap(oc.Variables)
	switch f.Name {
	case "send":
		args, err := ec.field_Mutation_send_args(ctx, rawArgs)
		if err != nil {
			return nil, badInput("%s", gqlMessage(err))
		}
		return r.prepareSend(ctx, args["input"].(model.SendInput), true)
	default:
		args, err := ec.field_Mutation_broadcast_args(ctx, rawArgs)
		if err != nil {
			return nil, badInput("%s", gqlMessage(err))
		}
		return r.prepareBroadcast(ctx, args["input"].(model.BroadcastInput), true)
	}
}

func gqlMessage(err error) string {
	if e, ok := err.(*gqlerror.Error); ok {
		return e.Message
	}
	return err.Error()
}

// prepareSend validates and authorizes a send: everything Send checks
// before it appends. validate: check the data, event and key now too,
// which Publish does anyway for a send alone.
func (r *Resolver) prepareSend(ctx context.Context, in model.SendInput, validate bool) ([]pubsub.PublishRequest, error) {
	reqs, err := r.prepare(ctx, "channel", []string{in.Channel}, in.Data, in.Event, in.IdempotencyKey, validate)
	if err != nil {
		return nil, err
	}
	if err := r.checkNotify([]string{in.Channel}, in.Notify); err != nil {
		return nil, err
	}
	tagNotify(reqs, in.Notify)
	return reqs, nil
}

// prepareBroadcast validates and authorizes a broadcast: 1..100 distinct
// channels, every one of them allowed, and its data, event and key valid
// (checked once for all its requests, which differ only in their channel;
// a broadcast to one channel alone leaves that to Publish unless
// validate).
func (r *Resolver) prepareBroadcast(ctx context.Context, in model.BroadcastInput, validate bool) ([]pubsub.PublishRequest, error) {
	if n := len(in.Channels); n == 0 || n > MaxBroadcastChannels {
		return nil, badInput("channels: %d channels, a broadcast takes 1 to %d", n, MaxBroadcastChannels)
	}
	reqs, err := r.prepare(ctx, "channels", in.Channels, in.Data, in.Event, in.IdempotencyKey, validate || len(in.Channels) > 1)
	if err != nil {
		return nil, err
	}
	if err := r.checkNotify(in.Channels, in.Notify); err != nil {
		return nil, err
	}
	tagNotify(reqs, in.Notify)
	return reqs, nil
}

// prepare is what a send and a broadcast check before anything is
// appended: valid, distinct channels (arg names them in errors), all of
// them allowed to the sender, and requests within the size of each
// channel (validate: and valid in data, event and key).
func (r *Resolver) prepare(ctx context.Context, arg string, channels []string, data json.RawMessage, event, idemKey *string, validate bool) ([]pubsub.PublishRequest, error) {
	for i, ch := range channels {
		if !pubsub.ValidChannel(ch) {
			return nil, badInput("%s: %s", arg, pubsub.ChannelProblem(ch))
		}
		for _, before := range channels[:i] {
			if before == ch {
				return nil, badInput("%s: %q is named twice", arg, ch)
			}
		}
	}
	if err := r.access.MaySend(ctx, channels); err != nil {
		return nil, Classify(err)
	}
	return r.publishRequests(channels, data, event, idemKey, validate)
}

// checkedRequests returns the requests its mutation's check prepared for
// the send or broadcast field being resolved, and the mutation's run; nil
// for a field alone in its mutation (or on the send fast path), which
// checks itself.
func checkedRequests(ctx context.Context) ([]pubsub.PublishRequest, *mutationRun) {
	if !graphql.HasOperationContext(ctx) {
		return nil, nil
	}
	run, _ := graphql.GetOperationContext(ctx).Stats.GetExtension(mutationRunKey).(*mutationRun)
	if run == nil {
		return nil, nil
	}
	p := run.fields[fieldKey(ctx)]
	if p == nil {
		return nil, nil // not the field of a checked send (cannot happen)
	}
	return p.reqs, run
}

// fieldKey is the response key of the field being resolved.
func fieldKey(ctx context.Context) string {
	if fc := graphql.GetFieldContext(ctx); fc != nil {
		return fc.Field.Alias
	}
	return ""
}

// publishField appends the requests of a field of run (nil: a field
// alone), unless the store failed a field before it. res holds what was
// appended, also when err says why the rest was not.
func (r *Resolver) publishField(ctx context.Context, run *mutationRun, reqs []pubsub.PublishRequest) (res []pubsub.PublishResult, err error) {
	if run != nil && run.failed != "" {
		return nil, Errorf(CodeUnavailable, "not sent: field %q of this mutation failed before it, and the fields after a failure "+
			"are not sent; retry them (with the same idempotencyKey: what was sent is not sent twice)", run.failed)
	}
	res, err = r.publish(ctx, reqs)
	if err != nil && run != nil {
		run.failed = fieldKey(ctx)
	}
	return res, err
}
