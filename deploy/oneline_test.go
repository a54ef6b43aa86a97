package deploy

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// TestInstallNodeOneLine runs the script as the install command a new
// node's answer shows: piped into `sh -s --` from a directory without the
// unit and flags file, with only --controller, --name and --token. It
// must fetch the exporter for this architecture, the unit and the flags
// file from the controller's /install/ routes (served here from the
// embedded files, as the controller serves them) and install them.
func TestInstallNodeOneLine(t *testing.T) {
	if runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64" {
		t.Skip("the controller serves amd64 and arm64 builds only")
	}
	exe := staticBuild(t, "./cmd/singbox_exporter")
	var mu sync.Mutex
	var fetched []string
	mux := http.NewServeMux()
	for _, name := range []string{"install-node.sh", "singbox_exporter.flags", "singbox_exporter.service"} {
		b, err := Files.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		route := "/install/" + name
		if name == "install-node.sh" {
			route = "/install/node.sh"
		}
		mux.HandleFunc(route, func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			fetched = append(fetched, r.URL.Path)
			mu.Unlock()
			w.Write(b)
		})
	}
	mux.HandleFunc("/install/singbox_exporter-linux-"+runtime.GOARCH, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		fetched = append(fetched, r.URL.Path)
		mu.Unlock()
		http.ServeFile(w, r, exe)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	script, err := Files.ReadFile("install-node.sh")
	if err != nil {
		t.Fatal(err)
	}
	prefix := t.TempDir()
	cmd := exec.Command("sh", "-s", "--", "--controller", srv.URL+"/", "--name", "fra-1", "--token", "tok-123", "--prefix", prefix, "--no-start")
	cmd.Dir = t.TempDir() // nothing beside the script
	cmd.Stdin = bytes.NewReader(script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("one-line install: %v\n%s", err, out)
	}
	want, _ := os.ReadFile(exe)
	got, err := os.ReadFile(filepath.Join(prefix, "usr/local/bin/singbox_exporter"))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("installed binary is not the controller's (%v)", err)
	}
	if tok := readFile(t, filepath.Join(prefix, "etc/singbox_exporter/token")); strings.TrimSpace(tok) != "tok-123" {
		t.Errorf("token file %q", tok)
	}
	flags := readFile(t, filepath.Join(prefix, "etc/singbox_exporter/flags"))
	for _, line := range []string{"--controller.url=" + srv.URL, "--node.name=fra-1", "--controller.token-file=/etc/singbox_exporter/token"} {
		if !strings.Contains("\n"+flags+"\n", "\n"+line+"\n") {
			t.Errorf("flags lack %q:\n%s", line, flags)
		}
	}
	if _, err := os.Stat(filepath.Join(prefix, "etc/systemd/system/singbox_exporter.service")); err != nil {
		t.Errorf("unit not installed: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(fetched) != 3 {
		t.Errorf("fetched %v, want the binary, the flags file and the unit", fetched)
	}
}
