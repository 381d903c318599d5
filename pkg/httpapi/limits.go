package httpapi

import (
	"net/http"
	"time"
)

// limits bound what one client can hold of the server. The endpoints are
// small GETs a scraper or an operator makes on the cluster network, and the
// API is open to anyone there, so a client that sends slowly, reads slowly
// or idles must lose its connection rather than hold it for ever:
//   - ReadHeaderTimeout 5 s: a request's headers arrive in one packet or two;
//   - ReadTimeout 10 s: the whole request, body included (no endpoint takes one);
//   - WriteTimeout 30 s: room for a /metrics scrape on a loaded host;
//   - IdleTimeout 60 s: a scraper polling every 15-30 s keeps its connection;
//   - MaxHeaderBytes 16 KiB: far above any real request's headers (Go's
//     default is 1 MiB).
type limits struct {
	ReadHeader, Read, Write, Idle time.Duration
	MaxHeaderBytes                int
}

var serverLimits = limits{
	ReadHeader:     5 * time.Second,
	Read:           10 * time.Second,
	Write:          30 * time.Second,
	Idle:           60 * time.Second,
	MaxHeaderBytes: 16 << 10,
}

// newHTTPServer is the http.Server with the limits.
func newHTTPServer(h http.Handler) *http.Server {
	l := serverLimits
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: l.ReadHeader,
		ReadTimeout:       l.Read,
		WriteTimeout:      l.Write,
		IdleTimeout:       l.Idle,
		MaxHeaderBytes:    l.MaxHeaderBytes,
	}
}
