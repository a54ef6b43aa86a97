package soak

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql" // the soak's own MariaDB

	"github.com/boxfleet/boxfleet/internal/testsupport"
)

// svc is one program of the fleet that the fault schedule stops and starts
// again, as systemd would: the same binary, arguments and directory every
// time, its log appended to one file.
type svc struct {
	t     *testing.T
	name  string
	dir   string
	bin   string
	args  []string
	proc  *testsupport.Proc
	ready func() bool // answers once the program serves again
	after func()      // runs after each start (a pid file)
	ns    *netns      // its network namespace; nil: on the host
	url   string      // a controller's base URL
}

func (s *svc) start() {
	s.t.Helper()
	s.proc = testsupport.Start(s.t, s.dir, s.name, s.bin, s.args...)
	if s.after != nil {
		s.after()
	}
}

// waitReady waits for the program to serve and fails the test when it does
// not come back by itself: the soak allows no manual fix.
func (s *svc) waitReady(timeout time.Duration) {
	s.t.Helper()
	testsupport.Until(s.t, s.name+" serving", timeout, s.ready)
}

func (s *svc) pid() int { return s.proc.Cmd.Process.Pid }

// alive says whether the last started process still runs (neither exited
// nor a zombie waiting to be reaped).
func (s *svc) alive() bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.pid()))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

func (s *svc) signal(sig syscall.Signal) { _ = s.proc.Cmd.Process.Signal(sig) }

func httpOK(u string) bool {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode/100 == 2
}

func dialOK(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// startMariaDB initialises a datadir of the soak's own and runs mariadbd on
// port: the soak kills and restarts it, which it must never do to the
// shared server other tests use. In a namespace it listens on its own
// address, where the controllers reach it over its link as user boxfleet
// (dsn); the soak itself reads the database over the Unix socket
// (observer), which no cut reaches, so that what it checks does not
// depend on the faults it injects.
func startMariaDB(t *testing.T, dir, port string, ns *netns) (db *svc, dsn, observer string) {
	t.Helper()
	data := filepath.Join(dir, "data")
	install := exec.Command("mariadb-install-db", "--no-defaults", "--datadir="+data, "--user=root",
		"--auth-root-authentication-method=normal", "--skip-test-db")
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("mariadb-install-db: %v\n%s", err, out)
	}
	bin, err := exec.LookPath("mariadbd")
	if err != nil {
		t.Fatalf("mariadbd: %v", err)
	}
	host := "127.0.0.1"
	if ns != nil {
		host = ns.nsIP
	}
	addr := net.JoinHostPort(host, port)
	sock := filepath.Join(dir, "mysqld.sock")
	socketBase := "root@unix(" + sock + ")/"
	db = &svc{t: t, name: "mariadb", dir: dir, bin: bin, ns: ns, args: []string{"--no-defaults", "--datadir=" + data,
		"--port=" + port, "--bind-address=" + host, "--socket=" + sock,
		"--pid-file=" + filepath.Join(dir, "mysqld.pid"), "--user=root", "--skip-log-bin", "--skip-name-resolve",
		"--innodb-buffer-pool-size=32M", "--performance-schema=off"}}
	db.bin, db.args = ns.wrap(db.bin, db.args)
	// Ready: it answers on its socket and its port is reachable (a cut
	// link has healed).
	db.ready = func() bool {
		c, err := sql.Open("mysql", socketBase+"?timeout=1s")
		if err != nil {
			return false
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return c.PingContext(ctx) == nil && dialOK(addr)
	}
	db.start()
	db.waitReady(60 * time.Second)
	c, err := sql.Open("mysql", socketBase)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, q := range []string{"CREATE DATABASE soak", "CREATE USER 'boxfleet'@'%' IDENTIFIED BY 'soak'",
		"GRANT ALL PRIVILEGES ON soak.* TO 'boxfleet'@'%'"} {
		if _, err := c.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	return db, "boxfleet:soak@tcp(" + addr + ")/soak?parseTime=true", socketBase + "soak?parseTime=true"
}

// twoControllers rewrites the shipped prometheus.yml and alertmanager.yml,
// already pointed at the first controller, so that every scrape, discovery
// and webhook of the controller names both: each Alertmanager notification
// goes to both controllers (their idempotency makes that harmless) and
// discovery keeps working while either is down.
func twoControllers(t *testing.T, promYml, amYml, c1, c2 string) (string, string) {
	t.Helper()
	promYml = strings.ReplaceAll(promYml, `targets: ["`+c1+`"]`, `targets: ["`+c1+`", "`+c2+`"]`)
	// An http_sd_configs or webhook entry is "- url: http://c1/..." and
	// the lines indented under it: repeat the entry for c2.
	promYml, amYml = dupEntries(promYml, c1, c2), dupEntries(amYml, c1, c2)
	// The controller's scrape target and its two discoveries.
	if strings.Count(promYml, c2) != 3 || !strings.Contains(amYml, c2+"/api/v1/alerts") {
		t.Fatalf("the shipped prometheus.yml or alertmanager.yml changed shape; the soak could not point them at two controllers:\n%s\n%s", promYml, amYml)
	}
	return promYml, amYml
}

func dupEntries(text, c1, c2 string) string {
	lines := strings.SplitAfter(text, "\n")
	var out []string
	for i := 0; i < len(lines); i++ {
		trimmed := strings.TrimLeft(lines[i], " ")
		if !strings.HasPrefix(trimmed, "- url: http://"+c1+"/") {
			out = append(out, lines[i])
			continue
		}
		indent := len(lines[i]) - len(trimmed)
		j := i + 1
		for j < len(lines) && len(lines[j])-len(strings.TrimLeft(lines[j], " ")) > indent && strings.TrimSpace(lines[j]) != "" {
			j++
		}
		entry := strings.Join(lines[i:j], "")
		out = append(out, entry, strings.Replace(entry, c1, c2, 1))
		i = j - 1
	}
	return strings.Join(out, "")
}

// exporterView is what the soak reads from an exporter's /metrics: the
// time of its last poll of sing-box, what it declares of its per-user
// bytes (estimated: split between users; unattributed: no user found),
// its per-user counters, the reloads its agent asked of sing-box and its
// failed state writes.
type exporterView struct {
	lastPoll, estimated, unattributed, reloads float64
	stateErrors                                int64
	users                                      map[string][2]int64 // [upload, download]
}

func readExporter(addr string) (v exporterView, ok bool) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return v, false
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return v, false
	}
	v.users = map[string][2]int64{}
	for line := range strings.SplitSeq(string(body), "\n") {
		name, val, found := strings.Cut(line, " ")
		if !found || strings.HasPrefix(line, "#") {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			continue
		}
		switch {
		case name == "singbox_exporter_last_poll_success_timestamp_seconds":
			v.lastPoll, ok = f, true
		case strings.HasPrefix(name, "singbox_exporter_attribution_estimated_bytes_total"):
			v.estimated += f
		case strings.HasPrefix(name, "singbox_unattributed_traffic_bytes_total"):
			v.unattributed += f
		case strings.HasPrefix(name, "singbox_user_traffic_bytes_total{"):
			u := v.users[label(name, "user")]
			if label(name, "direction") == "upload" {
				u[0] = int64(f)
			} else {
				u[1] = int64(f)
			}
			v.users[label(name, "user")] = u
		case strings.HasPrefix(name, "singbox_config_apply_total{") && label(name, "result") != "check_failed":
			v.reloads += f
		case strings.HasPrefix(name, "singbox_exporter_state_writes_total{") && label(name, "result") == "error":
			v.stateErrors = int64(f)
		}
	}
	return v, ok
}

// stateWriteErrors is how many writes of its state file the exporter has
// seen fail, -1 when it cannot be read.
func stateWriteErrors(addr string) int64 {
	// Its /metrics answering is enough: an exporter just restarted while
	// its sing-box is down has not polled yet, and has failed no write.
	v, _ := readExporter(addr)
	if v.users == nil {
		return -1
	}
	return v.stateErrors
}

// label is one label's value in a series name as the exposition format
// writes it.
func label(series, name string) string {
	_, rest, ok := strings.Cut(series, name+`="`)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, `"`)
	return v
}

// portOf is the port of a host:port address.
func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}
