package api_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/boxfleet/boxfleet/controller/api"
	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/controller/store/storetest"
	"github.com/boxfleet/boxfleet/internal/testsupport"
)

// TestNodesPollLoad has BOXFLEET_LOAD_NODES (default 500) registered nodes
// long-poll their user sets over real HTTP from one controller, as
// singbox_exporter's agent does (?wait=60, If-None-Match), and measures
// two things the issue sets targets for:
//
//   - the database statements per second that controller sends while
//     nothing changes (target: under 5), over BOXFLEET_LOAD_SECONDS
//     (default 60, the long poll's length, so that every node renews its
//     poll once in the window), first with the long polls alone, then with every node
//     also sending the agent's registration heartbeat once a minute;
//   - how long a user change takes to reach every node (target: under
//     2 s), made through a second controller on the same database (seen
//     by polling) and through the polled controller itself.
//
// Statements are counted by a proxy between the controller and MariaDB
// that reads the MySQL protocol (COM_QUERY and COM_STMT_EXECUTE), so the
// count is what the server really received, whatever code sent it; the
// busiest statements are logged to show where the load comes from. It
// needs BOXFLEET_TEST_MYSQL_DSN. The figures are logged, not asserted (the
// machine is shared); that every node gets every change, with the new
// user in its set, is asserted.
//
//	BOXFLEET_LOAD=1 BOXFLEET_TEST_MYSQL_DSN=... go test ./controller/api -run TestNodesPollLoad -v
func TestNodesPollLoad(t *testing.T) {
	if os.Getenv("BOXFLEET_LOAD") != "1" {
		t.Skip("load test: set BOXFLEET_LOAD=1")
	}
	nodes, seconds := 500, 60
	if v, err := strconv.Atoi(os.Getenv("BOXFLEET_LOAD_NODES")); err == nil && v > 0 {
		nodes = v
	}
	if v, err := strconv.Atoi(os.Getenv("BOXFLEET_LOAD_SECONDS")); err == nil && v > 0 {
		seconds = v
	}
	db := storetest.NewMySQLDB(t)
	ctx := context.Background()
	const token = "poll-load-admin-token-0123456789abcdef"

	// Controller B changes users; controller A, behind the counting
	// proxy, serves the nodes.
	sB := db.Open(t)
	if err := sB.EnsureAdminToken(ctx, "test", token); err != nil {
		t.Fatal(err)
	}
	proxy := newStmtCounter(t, db.DSN)
	sA, err := store.Open(ctx, proxy.DSN(db.DSN), "", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer sA.Close()
	log := logrus.New()
	log.SetOutput(io.Discard)
	srvA := httptest.NewServer(api.New(api.Options{Store: sA, Log: log, Registry: prometheus.NewRegistry()}))
	defer srvA.Close()
	srvB := httptest.NewServer(api.New(api.Options{Store: sB, Log: log, Registry: prometheus.NewRegistry()}))
	defer srvB.Close()

	// 200 users, a fifth of them in one of five groups; nodes in five
	// groups too, so five sets are rendered per change.
	for i := range 200 {
		spec := store.UserSpec{}
		if i%5 == 0 {
			g := []string{fmt.Sprintf("g%d", i%25/5)}
			spec.Groups = &g
		}
		if _, err := sB.CreateUser(ctx, "test", fmt.Sprintf("user%03d", i), "", spec); err != nil {
			t.Fatal(err)
		}
	}
	ns := make([]*pollNode, nodes)
	for i := range ns {
		name := fmt.Sprintf("node%03d", i)
		_, tok, err := sB.CreateNode(ctx, "test", name, map[string]string{"group": fmt.Sprintf("g%d", i%5)})
		if err != nil {
			t.Fatal(err)
		}
		ns[i] = &pollNode{name: name, token: tok, got: make(chan pollAnswer, 16)}
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2 * nodes, MaxConnsPerHost: 0, IdleConnTimeout: 5 * time.Minute}}
	// Registered as the agent does at start, so that the heartbeats below
	// change nothing, as in a fleet that has run for a while.
	for _, n := range ns {
		if code := n.register(client, srvB.URL); code != http.StatusOK {
			t.Fatalf("registering %s: %d", n.name, code)
		}
	}

	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }()
	for _, n := range ns {
		wg.Go(func() { n.poll(runCtx, client, srvA.URL) })
	}
	// Every node has its set and waits in a long poll.
	for _, n := range ns {
		select {
		case a := <-n.got:
			if a.err != nil {
				t.Fatalf("%s: %v", n.name, a.err)
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("%s got no user set within a minute", n.name)
		}
	}
	time.Sleep(2 * time.Second)

	window := time.Duration(seconds) * time.Second
	idle := func(label string) {
		t.Helper()
		before, req0 := proxy.snapshot(), answers(ns)
		time.Sleep(window)
		after, req1 := proxy.snapshot(), answers(ns)
		rate := float64(after.total-before.total) / window.Seconds()
		verdict := "ok"
		if rate >= 5 {
			verdict = "OVER the target of 5/s"
		}
		t.Logf("%d nodes, nothing changing, %s: %.1f statements/s to the database over %s (%d requests answered); %s",
			nodes, label, rate, window, req1-req0, verdict)
		for _, l := range after.top(before, window, 8) {
			t.Logf("    %s", l)
		}
	}
	idle("long polls only")

	// A change made on B reaches A by polling; one made on A itself may
	// be seen sooner. Each must reach every node with the new user.
	for i, via := range []*httptest.Server{srvB, srvA, srvB} {
		for _, n := range ns {
			drain(n.got)
		}
		name := fmt.Sprintf("newcomer%d", i)
		start := time.Now()
		req, _ := http.NewRequest("POST", via.URL+"/api/v1/users", strings.NewReader(`{"name":"`+name+`"}`))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("creating %s: %s", name, resp.Status)
		}
		lat := make([]time.Duration, 0, nodes)
		for _, n := range ns {
			deadline := time.After(30*time.Second - time.Since(start))
		wait:
			for {
				select {
				case a := <-n.got:
					if a.err != nil {
						t.Fatalf("%s: %v", n.name, a.err)
					}
					if a.users[name] {
						lat = append(lat, a.at.Sub(start))
						break wait
					}
				case <-deadline:
					t.Fatalf("%s did not get %s within 30 s", n.name, name)
				}
			}
		}
		slices.Sort(lat)
		p := func(x float64) time.Duration { return lat[int(x*float64(len(lat)-1))].Round(time.Millisecond) }
		where := "another controller"
		if via == srvA {
			where = "the polled controller"
		}
		verdict := "ok"
		if p(1) >= 2*time.Second {
			verdict = "OVER the target of 2 s"
		}
		t.Logf("a user added through %s reached all %d nodes: p50 %s, p99 %s, last %s; %s", where, nodes, p(.5), p(.99), p(1), verdict)
	}

	// The agent also registers again every minute: a heartbeat.
	for _, n := range ns {
		wg.Go(func() { n.heartbeat(runCtx, client, srvA.URL) })
	}
	time.Sleep(2 * time.Second)
	idle("long polls and a heartbeat a minute from each node")
}

// pollNode is one node's agent, reduced to its long poll and heartbeat.
type pollNode struct {
	name, token string
	got         chan pollAnswer
	answers     atomic.Int64
}

type pollAnswer struct {
	at    time.Time
	users map[string]bool
	err   error
}

// poll long-polls like the agent, asking to wait 60 s, except that its
// first wait is random: nodes of a fleet that has run for a while renew
// their polls at moments spread over the minute, not all at once.
func (n *pollNode) poll(ctx context.Context, c *http.Client, base string) {
	etag := ""
	wait := 1 + rand.IntN(60)
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, "GET", base+"/api/v1/nodes/"+n.name+"/users?wait="+strconv.Itoa(wait), nil)
		req.Header.Set("Authorization", "Bearer "+n.token)
		if etag != "" {
			req.Header.Set("If-None-Match", etag)
		}
		resp, err := c.Do(req)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			n.got <- pollAnswer{err: err}
			return
		}
		n.answers.Add(1)
		if etag != "" {
			wait = 60
		}
		switch resp.StatusCode {
		case http.StatusNotModified:
			resp.Body.Close()
		case http.StatusOK:
			var set struct {
				Users []struct {
					Name string `json:"name"`
				} `json:"users"`
			}
			err := json.NewDecoder(resp.Body).Decode(&set)
			resp.Body.Close()
			a := pollAnswer{at: time.Now(), users: map[string]bool{}, err: err}
			for _, u := range set.Users {
				a.users[u.Name] = true
			}
			etag = resp.Header.Get("ETag")
			n.got <- a
		default:
			resp.Body.Close()
			n.got <- pollAnswer{err: fmt.Errorf("GET users: %s", resp.Status)}
			return
		}
	}
}

// heartbeat registers the node at a random moment of the first minute,
// then once a minute, with what it registered before (no change).
func (n *pollNode) heartbeat(ctx context.Context, c *http.Client, base string) {
	next := time.Duration(rand.Int64N(int64(time.Minute)))
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(next):
		}
		next = time.Minute
		if n.register(c, base) == 0 {
			return
		}
	}
}

// register sends the node's registration (always the same) and returns
// the status code, 0 when the request failed.
func (n *pollNode) register(c *http.Client, base string) int {
	body := `{"address":"` + n.name + `.example.com","exporter":"` + n.name + `.example.com:9550","inbounds":[]}`
	req, _ := http.NewRequest("PUT", base+"/api/v1/nodes/"+n.name, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+n.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func drain(ch chan pollAnswer) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

// stmtCounter is a proxy in front of MariaDB that counts the statements
// one controller sends: COM_QUERY (transaction control and statements
// without arguments) and COM_STMT_EXECUTE (statements with arguments,
// which go-sql-driver prepares), each by its SQL text.
type stmtCounter struct {
	*testsupport.MySQLProxy

	mu     sync.Mutex
	byText map[string]int64
	total  int64
}

func newStmtCounter(t *testing.T, dsn string) *stmtCounter {
	t.Helper()
	p := &stmtCounter{byText: map[string]int64{}}
	p.MySQLProxy = testsupport.StartMySQLProxy(t, dsn, func() testsupport.PacketHooks {
		cs := &connStmts{ids: map[uint32]string{}}
		return testsupport.PacketHooks{
			FromClient: func(hdr, payload []byte) { p.fromClient(cs, hdr, payload) },
			FromServer: cs.fromServer,
		}
	})
	return p
}

// connStmts is what one connection prepared: the texts of prepares
// waiting for their answer, and statement ids by text once answered.
type connStmts struct {
	mu      sync.Mutex
	pending []string
	ids     map[uint32]string
}

// fromServer reads the statement id of each COM_STMT_PREPARE_OK (the first
// packet of a prepare's answer).
func (cs *connStmts) fromServer(hdr, payload []byte) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if len(cs.pending) > 0 && hdr[3] == 1 && len(payload) >= 5 && (payload[0] == 0x00 || payload[0] == 0xff) {
		if payload[0] == 0x00 {
			cs.ids[binary.LittleEndian.Uint32(payload[1:5])] = cs.pending[0]
		}
		cs.pending = cs.pending[1:]
	}
}

var spaces = regexp.MustCompile(`\s+`)

// fromClient counts the client's commands: a packet with sequence number
// 0 begins a command.
func (p *stmtCounter) fromClient(cs *connStmts, hdr, payload []byte) {
	if hdr[3] != 0 || len(payload) == 0 {
		return
	}
	switch payload[0] {
	case 0x03: // COM_QUERY
		p.count(string(payload[1:]))
	case 0x16: // COM_STMT_PREPARE
		cs.mu.Lock()
		cs.pending = append(cs.pending, string(payload[1:]))
		cs.mu.Unlock()
	case 0x17: // COM_STMT_EXECUTE
		if len(payload) >= 5 {
			cs.mu.Lock()
			text := cs.ids[binary.LittleEndian.Uint32(payload[1:5])]
			cs.mu.Unlock()
			p.count(text)
		}
	}
}

func (p *stmtCounter) count(text string) {
	text = strings.TrimSpace(spaces.ReplaceAllString(text, " "))
	if len(text) > 110 {
		text = text[:110] + "…"
	}
	p.mu.Lock()
	p.byText[text]++
	p.total++
	p.mu.Unlock()
}

type stmtSnapshot struct {
	total  int64
	byText map[string]int64
}

func (p *stmtCounter) snapshot() stmtSnapshot {
	p.mu.Lock()
	defer p.mu.Unlock()
	return stmtSnapshot{total: p.total, byText: maps.Clone(p.byText)}
}

// answers is how many answers the nodes' long polls have had.
func answers(ns []*pollNode) int64 {
	var n int64
	for _, x := range ns {
		n += x.answers.Load()
	}
	return n
}

// top lists the statements sent most since before, with their rates.
func (s stmtSnapshot) top(before stmtSnapshot, window time.Duration, n int) []string {
	type row struct {
		text string
		d    int64
	}
	var rows []row
	for k, v := range s.byText {
		if d := v - before.byText[k]; d > 0 {
			rows = append(rows, row{k, d})
		}
	}
	slices.SortFunc(rows, func(a, b row) int { return int(b.d - a.d) })
	var out []string
	for _, r := range rows[:min(n, len(rows))] {
		out = append(out, fmt.Sprintf("%7.1f/s  %s", float64(r.d)/window.Seconds(), r.text))
	}
	return out
}
