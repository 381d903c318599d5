// Package adminsock is the daemon's local admin endpoint: a unix socket in
// its data dir through which the CLI's operator verbs (remove, rejoin
// --wipe, upgrade pause|resume) reach the running daemon.
//
// Unlike the HTTP API (read-only, on the network) it changes things, so it
// is local and authenticated by the kernel: the socket lives in a 0700
// directory with mode 0600, and every connection's peer credentials
// (SO_PEERCRED) are checked: only root and the daemon's own user are
// served. It never listens on the network and never reads a token.
//
// The protocol is small: POST /v1/<verb> with a JSON body of at most
// maxBody bytes; the answer streams JSON lines, zero or more
// {"progress": "..."} and one last {"ok": true|false, "message": "..."}.
// A verb runs under a deadline (maxVerb) whatever the client does.
package adminsock

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// SocketName is the socket's file name in the daemon's data dir.
const SocketName = "admin.sock"

// Path is the socket of a daemon whose data-dir is dataDir.
func Path(dataDir string) string { return filepath.Join(dataDir, SocketName) }

const (
	maxBody   = 64 << 10
	maxVerb   = 30 * time.Minute
	keepAlive = 15 * time.Second // a progress line at least this often, so a waiting client sees the daemon alive
)

// Peer is the kernel's word on who is on the other end of a connection.
type Peer struct {
	UID, GID uint32
	PID      int32
}

// Allowed serves root and the daemon's own user, nobody else.
func Allowed(p Peer, self uint32) error {
	if p.UID == 0 || p.UID == self {
		return nil
	}
	return fmt.Errorf("admin socket: refused: the caller's uid %d is neither root nor the daemon's uid %d; run the command as root (sudo)", p.UID, self)
}

// Verb carries out one operator verb: body is the request's JSON, progress
// sends a line to the client as the verb goes. The returned message is the
// outcome; an error is a refusal or a failure, in words for the operator.
type Verb func(ctx context.Context, body json.RawMessage, progress func(string)) (string, error)

// Reply is one line of the answer.
type Reply struct {
	Progress string `json:"progress,omitempty"`
	Done     bool   `json:"done,omitempty"`
	OK       bool   `json:"ok,omitempty"`
	Message  string `json:"message,omitempty"`
}

// Server is the listening endpoint: Listen (fails now) → Run(ctx) → Close.
type Server struct {
	path string
	ln   net.Listener
	srv  *http.Server
	log  *zap.Logger
	// self is the uid served besides root (the daemon's own).
	self uint32
	once sync.Once
}

// Listen creates the socket at path (its directory 0700, the socket 0600)
// and serves verbs by name. A stale socket file left by a daemon that died
// is replaced; a socket another daemon answers on is an error.
func Listen(path string, verbs map[string]Verb, log *zap.Logger) (*Server, error) {
	return listen(path, verbs, log, uint32(os.Getuid()))
}

func listen(path string, verbs map[string]Verb, log *zap.Logger, self uint32) (*Server, error) {
	if log == nil {
		log = zap.NewNop()
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("admin socket: %s exists and is not a socket: move it away", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("admin socket: %s is served by another process: is a second daemon running on data-dir %s?", path, dir)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("admin socket: remove stale %s: %w", path, err)
		}
	}
	// The socket is made with no permissions for group and others from
	// the start (umask), then set to 0600.
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("admin socket: listen %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	s := &Server{path: path, ln: ln, log: log, self: self}
	mux := http.NewServeMux()
	for name, v := range verbs {
		mux.Handle("/v1/"+name, s.handle(name, v))
	}
	s.srv = &http.Server{
		Handler:           s.authenticate(mux),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		IdleTimeout:       30 * time.Second,
		MaxHeaderBytes:    8 << 10,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			p, err := peerOf(c)
			return context.WithValue(ctx, peerKey{}, peerResult{p, err})
		},
		ErrorLog: zap.NewStdLog(log),
	}
	return s, nil
}

type peerKey struct{}

type peerResult struct {
	peer Peer
	err  error
}

// peerOf reads the connection's peer credentials from the kernel.
func peerOf(c net.Conn) (Peer, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return Peer{}, errors.New("not a unix socket connection")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return Peer{}, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) { cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) }); err != nil {
		return Peer{}, err
	}
	if cerr != nil {
		return Peer{}, cerr
	}
	return Peer{UID: cred.Uid, GID: cred.Gid, PID: cred.Pid}, nil
}

func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pr, _ := r.Context().Value(peerKey{}).(peerResult)
		err := pr.err
		if err == nil {
			err = Allowed(pr.peer, s.self)
		}
		if err != nil {
			s.log.Warn("admin socket: caller refused", zap.Uint32("uid", pr.peer.UID), zap.Int32("pid", pr.peer.PID), zap.Error(err))
			writeReply(w, http.StatusForbidden, Reply{Done: true, Message: err.Error()})
			return
		}
		next.ServeHTTP(w, r)
	})
}

func writeReply(w http.ResponseWriter, code int, r Reply) {
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(r)
}

func (s *Server) handle(name string, v Verb) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			writeReply(w, http.StatusMethodNotAllowed, Reply{Done: true, Message: "use POST"})
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			writeReply(w, http.StatusRequestEntityTooLarge, Reply{Done: true, Message: fmt.Sprintf("request body: %v (at most %d bytes)", err, maxBody)})
			return
		}
		if len(body) == 0 {
			body = []byte("{}")
		}
		if !json.Valid(body) {
			writeReply(w, http.StatusBadRequest, Reply{Done: true, Message: "request body is not JSON"})
			return
		}
		// The body is read: the verb may wait long, which the server's
		// read deadline must not cut.
		rc := http.NewResponseController(w)
		_ = rc.SetReadDeadline(time.Time{})
		_ = rc.SetWriteDeadline(time.Time{})
		ctx, cancel := context.WithTimeout(r.Context(), maxVerb)
		defer cancel()
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(http.StatusOK)
		var mu sync.Mutex
		enc := json.NewEncoder(w)
		send := func(rep Reply) {
			mu.Lock()
			defer mu.Unlock()
			_ = enc.Encode(rep)
			_ = rc.Flush()
		}
		done := make(chan struct{})
		go func() {
			t := time.NewTicker(keepAlive)
			defer t.Stop()
			for {
				select {
				case <-done:
					return
				case <-t.C:
					send(Reply{}) // a keep-alive line
				}
			}
		}()
		s.log.Info("operator verb", zap.String("verb", name))
		msg, err := v(ctx, body, func(line string) { send(Reply{Progress: line}) })
		close(done)
		if err != nil {
			s.log.Info("operator verb refused or failed", zap.String("verb", name), zap.Error(err))
			send(Reply{Done: true, Message: err.Error()})
			return
		}
		s.log.Info("operator verb done", zap.String("verb", name), zap.String("outcome", msg))
		send(Reply{Done: true, OK: true, Message: msg})
	})
}

// Run serves until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case <-ctx.Done():
		s.Close()
		<-errc
		return nil
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("admin socket: %w", err)
	}
}

// Close stops serving and removes the socket file.
func (s *Server) Close() error {
	var err error
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if e := s.srv.Shutdown(ctx); e != nil {
			_ = s.srv.Close()
		}
		if e := os.Remove(s.path); e != nil && !errors.Is(e, os.ErrNotExist) {
			err = e
		}
	})
	return err
}

// ErrNoDaemon: nothing answers on the socket (the daemon is stopped).
var ErrNoDaemon = errors.New("the daemon does not answer on its admin socket")

// Call runs verb on the daemon at socket path with req as the JSON body,
// handing each progress line to progress, and returns the outcome's
// message; a refusal or failure is an error with the daemon's words.
func Call(ctx context.Context, path, verb string, req any, progress func(string)) (string, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return "", err
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		ResponseHeaderTimeout: 30 * time.Second,
	}
	defer tr.CloseIdleConnections()
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://admin/v1/"+verb, strings.NewReader(string(body)))
	if err != nil {
		return "", err
	}
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Transport: tr}).Do(hreq)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && (errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED)) {
			return "", fmt.Errorf("%w (%s): start it (systemctl start rke2-hanode), or check --config names its data-dir", ErrNoDaemon, path)
		}
		if errors.Is(err, syscall.EACCES) {
			return "", fmt.Errorf("admin socket %s: permission denied: run the command as root (sudo)", path)
		}
		return "", fmt.Errorf("admin socket %s: %w", path, err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 16<<20))
	for sc.Scan() {
		var r Reply
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return "", fmt.Errorf("admin socket: bad reply line: %w", err)
		}
		switch {
		case r.Done && r.OK:
			return r.Message, nil
		case r.Done:
			return "", errors.New(r.Message)
		case r.Progress != "" && progress != nil:
			progress(r.Progress)
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("admin socket: %w", err)
	}
	if ctx.Err() != nil {
		return "", fmt.Errorf("%s: gave up waiting: %w", verb, ctx.Err())
	}
	return "", fmt.Errorf("admin socket: the daemon closed the answer to %s without an outcome (did it stop?)", verb)
}
