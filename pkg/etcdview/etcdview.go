package etcdview

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// HTTPPort is the port of RKE2's etcd HTTP client URL (listen-client-http-urls).
const HTTPPort = 2382

// DefaultTimeout bounds each call of Read.
const DefaultTimeout = 5 * time.Second

// maxBody caps an answer: a member list of a few servers is a few KB.
const maxBody = 1 << 20

// MaxMembers bounds a member list: what a signed server claim carries
// (claims.MaxMembers); etcd itself advises at most 7 voters.
const MaxMembers = 16

// View is a server's view of its local etcd (the claims contract's EtcdView).
type View struct {
	ObservedAt time.Time // zero: no view
	Healthy    bool      // the local member answered and the cluster has a leader
	MemberName string    // this host's member name (<node>-<8 hex>)
	MemberID   uint64
	Learner    bool
	Revision   int64  // store revision of the local member
	RaftIndex  uint64 // raft applied index of the local member
	Leader     uint64 // the leader's member ID, 0: none
	Members    []Member
}

// Member is one etcd member as the local member lists it.
type Member struct {
	Name    string
	ID      uint64
	PeerURL string
	Learner bool
}

// Voters counts the members that are not learners.
func (v View) Voters() int {
	n := 0
	for _, m := range v.Members {
		if !m.Learner {
			n++
		}
	}
	return n
}

// Files are RKE2's etcd client credentials under its data-dir.
type Files struct {
	CA, Cert, Key string
}

// FilesIn is where RKE2 keeps them: <rke2-data-dir>/server/tls/etcd/.
func FilesIn(rke2DataDir string) Files {
	dir := filepath.Join(rke2DataDir, "server", "tls", "etcd")
	return Files{CA: filepath.Join(dir, "server-ca.crt"), Cert: filepath.Join(dir, "client.crt"), Key: filepath.Join(dir, "client.key")}
}

// Reader reads the local etcd's view. The zero value is not usable: set
// Addr and Files.
type Reader struct {
	// Addr is host:port of the HTTP client URL (see the package doc).
	Addr  string
	Files Files
	// Timeout bounds each call (DefaultTimeout when 0).
	Timeout time.Duration
	// Now is the clock for ObservedAt (time.Now when nil).
	Now func() time.Time
}

// New is a Reader of RKE2's etcd at host (its own loopback address) with
// the credentials under rke2DataDir.
func New(rke2DataDir, host string) *Reader {
	return &Reader{Addr: net.JoinHostPort(host, strconv.Itoa(HTTPPort)), Files: FilesIn(rke2DataDir)}
}

// Read asks the local etcd for its status, its member list and its health.
// An error says which step failed; a member that answers but sees no
// leader (quorum lost) is a View with Healthy false, not an error.
func (r *Reader) Read(ctx context.Context) (View, error) {
	client, err := r.client()
	if err != nil {
		return View{}, err
	}
	defer client.CloseIdleConnections()
	stBody, err := r.call(ctx, client, "/v3/maintenance/status")
	if err != nil {
		return View{}, err
	}
	mlBody, err := r.call(ctx, client, "/v3/cluster/member/list")
	if err != nil {
		return View{}, err
	}
	v, err := decodeView(stBody, mlBody)
	if err != nil {
		return View{}, fmt.Errorf("etcd at %s: %w", r.Addr, err)
	}
	now := time.Now
	if r.Now != nil {
		now = r.Now
	}
	v.Healthy = v.Leader != 0 && r.health(ctx, client)
	v.ObservedAt = now()
	return v, nil
}

// health is etcd's own /health: a linearizable read through the leader,
// false when quorum is lost even if a stale leader is still named.
func (r *Reader) health(ctx context.Context, client *http.Client) bool {
	ctx, cancel := context.WithTimeout(ctx, r.timeout())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+r.Addr+"/health", nil)
	if err != nil {
		return false
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var h struct {
		Health string `json:"health"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(io.LimitReader(resp.Body, maxBody)).Decode(&h) != nil {
		return false
	}
	return h.Health == "true"
}

func (r *Reader) timeout() time.Duration {
	if r.Timeout > 0 {
		return r.Timeout
	}
	return DefaultTimeout
}

// client loads the credentials afresh on every Read: RKE2 renews its
// certificates at start, so a file may change under a running daemon.
func (r *Reader) client() (*http.Client, error) {
	caPEM, err := os.ReadFile(r.Files.CA)
	if err != nil {
		return nil, fmt.Errorf("etcd CA: %w (RKE2 writes it at its first start)", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("etcd CA %s: no PEM certificate in it", r.Files.CA)
	}
	cert, err := tls.LoadX509KeyPair(r.Files.Cert, r.Files.Key)
	if err != nil {
		return nil, fmt.Errorf("etcd client certificate %s: %w", r.Files.Cert, err)
	}
	tr := &http.Transport{
		TLSClientConfig:       &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   r.timeout(),
		ResponseHeaderTimeout: r.timeout(),
		DisableKeepAlives:     false,
		MaxIdleConns:          1,
		Proxy:                 nil, // the local etcd: never through a proxy
	}
	return &http.Client{Transport: tr, Timeout: r.timeout()}, nil
}

// call POSTs an empty request to a gateway path and returns its answer.
func (r *Reader) call(ctx context.Context, client *http.Client, path string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+r.Addr+path, bytes.NewReader([]byte("{}")))
	if err != nil {
		return nil, fmt.Errorf("etcd %s: %w", path, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("etcd at %s: %s: %w", r.Addr, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("etcd at %s: %s: reading the answer: %w", r.Addr, path, err)
	}
	if len(body) > maxBody {
		return nil, fmt.Errorf("etcd at %s: %s: answer larger than %d bytes", r.Addr, path, maxBody)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("etcd at %s: %s: %s: %s", r.Addr, path, resp.Status, printable(body))
	}
	return body, nil
}

// decodeView reads the gateway's answers to status and member list into
// a View (without health and time): strict about types, tolerant of
// fields it does not know.
func decodeView(statusBody, membersBody []byte) (View, error) {
	var st statusResponse
	if err := json.Unmarshal(statusBody, &st); err != nil {
		return View{}, fmt.Errorf("/v3/maintenance/status: not the gateway's JSON: %w", err)
	}
	var ml memberListResponse
	if err := json.Unmarshal(membersBody, &ml); err != nil {
		return View{}, fmt.Errorf("/v3/cluster/member/list: not the gateway's JSON: %w", err)
	}
	v := View{
		MemberID:  uint64(st.Header.MemberID),
		Learner:   st.IsLearner,
		Revision:  int64(st.Header.Revision),
		RaftIndex: uint64(st.RaftAppliedIndex),
		Leader:    uint64(st.Leader),
	}
	if v.RaftIndex == 0 {
		v.RaftIndex = uint64(st.RaftIndex)
	}
	if v.MemberID == 0 {
		return View{}, errors.New("status names no member ID")
	}
	if v.Revision < 0 {
		return View{}, fmt.Errorf("status: revision %d out of range", uint64(st.Header.Revision))
	}
	if len(ml.Members) > MaxMembers {
		return View{}, fmt.Errorf("member list: %d members, more than etcd allows a cluster (%d)", len(ml.Members), MaxMembers)
	}
	for _, m := range ml.Members {
		mm := Member{Name: printable([]byte(m.Name)), ID: uint64(m.ID), Learner: m.IsLearner}
		if len(m.PeerURLs) > 0 {
			mm.PeerURL = printable([]byte(m.PeerURLs[0]))
		}
		v.Members = append(v.Members, mm)
		if mm.ID == v.MemberID {
			v.MemberName = mm.Name
		}
	}
	slices.SortFunc(v.Members, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	if v.MemberName == "" {
		return View{}, fmt.Errorf("member %x is not in its own member list (%d members)", v.MemberID, len(v.Members))
	}
	return v, nil
}

// printable is the start of an error body, safe for a log line.
func printable(b []byte) string {
	const max = 200
	if len(b) > max {
		b = b[:max]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return ' '
		}
		return r
	}, string(b))
}

// The gateway's JSON (proto field names; 64-bit integers as strings).
type statusResponse struct {
	Header struct {
		MemberID u64 `json:"member_id"`
		Revision u64 `json:"revision"`
	} `json:"header"`
	Leader           u64  `json:"leader"`
	RaftIndex        u64  `json:"raftIndex"`
	RaftAppliedIndex u64  `json:"raftAppliedIndex"`
	IsLearner        bool `json:"isLearner"`
}

type memberListResponse struct {
	Members []struct {
		ID        u64      `json:"ID"`
		Name      string   `json:"name"`
		PeerURLs  []string `json:"peerURLs"`
		IsLearner bool     `json:"isLearner"`
	} `json:"members"`
}

// u64 reads protojson's 64-bit integers: a decimal string (or a number).
type u64 uint64

func (u *u64) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if s == "" || s == "null" {
		*u = 0
		return nil
	}
	if strings.HasPrefix(s, "-") {
		// revision is int64 on the wire; etcd never sends a negative one.
		return errors.New("negative value " + s)
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return fmt.Errorf("not a 64-bit integer: %q", s)
	}
	*u = u64(n)
	return nil
}
