package httpapi

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func serveRaw(t *testing.T) string {
	t.Helper()
	s, err := Listen(Config{Address: "127.0.0.1:0", Gatherer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	// The http.Server itself, so the test does not depend on the shape of
	// the lifecycle around it.
	done := make(chan error, 1)
	go func() { done <- s.srv.Serve(s.ln) }()
	t.Cleanup(func() {
		s.srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return s.Addr().String()
}

// TestHeaderLimit: a request with 64 KiB of headers is refused (the old
// server took up to Go's default of 1 MiB per request).
func TestHeaderLimit(t *testing.T) {
	addr := serveRaw(t)
	req, _ := http.NewRequest("GET", "http://"+addr+"/healthz", nil)
	req.Header.Set("X-Pad", strings.Repeat("a", 64<<10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("64 KiB of headers: status %d, want 431", resp.StatusCode)
	}
	resp, err = http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("a normal request: status %d", resp.StatusCode)
	}
}

// waitClosed reads from c until the server closes it, within a generous
// deadline, and fails if the server never does.
func waitClosed(t *testing.T, what string, c net.Conn, r io.Reader) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, err := io.Copy(io.Discard, r)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("%s: the server kept the connection for 30 s", what)
	}
}

// TestSlowClientsAreClosed: the slowloris family. A client dribbling its
// headers, one dribbling a body and one idling on a kept-alive connection
// each lose the connection (limits shortened so the test is quick; the
// real values are checked by TestServerLimits).
func TestSlowClientsAreClosed(t *testing.T) {
	old := serverLimits
	serverLimits = limits{ReadHeader: 300 * time.Millisecond, Read: 600 * time.Millisecond, Write: time.Second, Idle: 600 * time.Millisecond, MaxHeaderBytes: 16 << 10}
	defer func() { serverLimits = old }()
	addr := serveRaw(t)

	dial := func() net.Conn {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	stop := make(chan struct{})
	defer close(stop)
	dribble := func(c net.Conn, first string) {
		fmt.Fprint(c, first)
		go func() {
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					if _, err := c.Write([]byte("a")); err != nil {
						return
					}
				}
			}
		}()
	}

	headers := dial()
	dribble(headers, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
	waitClosed(t, "dribbled headers", headers, headers)

	body := dial()
	dribble(body, "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
	waitClosed(t, "dribbled body", body, body)

	idle := dial()
	fmt.Fprint(idle, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(idle)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	waitClosed(t, "idle keep-alive", idle, br)
}

func TestServerLimits(t *testing.T) {
	srv := newHTTPServer(http.NotFoundHandler())
	if srv.ReadHeaderTimeout <= 0 || srv.ReadTimeout <= 0 || srv.WriteTimeout <= 0 || srv.IdleTimeout <= 0 {
		t.Fatalf("a timeout is unset: header %v, read %v, write %v, idle %v", srv.ReadHeaderTimeout, srv.ReadTimeout, srv.WriteTimeout, srv.IdleTimeout)
	}
	if srv.MaxHeaderBytes <= 0 || srv.MaxHeaderBytes > 64<<10 {
		t.Fatalf("MaxHeaderBytes = %d", srv.MaxHeaderBytes)
	}
}
