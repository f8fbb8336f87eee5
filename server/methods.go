package server

import (
	"net/http"

	"github.com/pushgate/pushgate/server/access"
)

// headRead answers HEAD on a read endpoint (/events, /poll): the status
// and headers its GET would start with, without a body and without
// subscribing, holding or hijacking anything. The request is checked as
// its GET would be (parse, then read access), so a HEAD tells a client
// whether its GET would be refused and why; the connection and rate
// limits of streams are not taken, since a HEAD opens no stream.
func headRead(auth *access.Auth, parse func(*http.Request) (readRequest, error), headers func(http.Header)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, err := parse(r)
		if err == nil {
			err = auth.MayRead(r.Context(), req.channels)
		}
		if err != nil {
			writeErr(w, err)
			return
		}
		headers(w.Header())
		w.WriteHeader(http.StatusOK)
	})
}

// parseEventsRequest reads a GET /events as handleEvents does.
func parseEventsRequest(r *http.Request) (readRequest, error) { return parseReadRequest(r, true) }

// parsePollRequest reads a GET /poll as handlePoll does.
func parsePollRequest(r *http.Request) (readRequest, error) {
	req, err := parseReadRequest(r, false)
	if err == nil {
		_, _, err = pollParams(r)
	}
	return req, err
}
