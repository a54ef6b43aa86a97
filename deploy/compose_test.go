package deploy

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v2"

	"github.com/boxfleet/boxfleet/internal/testbin"
)

var (
	controlPlane = []string{"alertmanager", "blackbox", "boxfleet", "grafana", "mysql", "prometheus"}
	demoNode     = []string{"demo-node-init", "sing-box", "singbox-exporter"}
	vmCluster    = []string{"vmagent-control", "vmagent-region", "vmalert", "vminsert", "vmselect", "vmstorage-1", "vmstorage-2"}
	// every profile at once: the tests of files, volumes, addresses and
	// paths cover every service.
	allProfiles = []string{"demo-node", "vm-cluster"}
)

// stage copies what docker-compose.yml refers to into a temporary
// directory and creates the secrets there with the real
// docker/gen-secrets.sh, as an operator's first command would.
func stage(t *testing.T) (root, dir string) {
	t.Helper()
	root = testbin.RepoRoot(t)
	dir = t.TempDir()
	for _, p := range []string{"docker-compose.yml", "docker", "dashboards", "prometheus", "alerts", "deploy"} {
		if out, err := exec.Command("cp", "-r", filepath.Join(root, p), filepath.Join(dir, p)).CombinedOutput(); err != nil {
			t.Fatalf("copying %s: %v\n%s", p, err, out)
		}
	}
	os.RemoveAll(filepath.Join(dir, "docker", "secrets"))
	cmd := exec.Command("sh", filepath.Join(dir, "docker", "gen-secrets.sh"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gen-secrets.sh: %v\n%s", err, out)
	}
	return root, dir
}

func load(t *testing.T, dir string, profiles ...string) *types.Project {
	t.Helper()
	return loadEnv(t, dir, types.Mapping{}, profiles...)
}

// loadEnv loads with env as the variables compose interpolates.
func loadEnv(t *testing.T, dir string, env types.Mapping, profiles ...string) *types.Project {
	t.Helper()
	p, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  dir,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(dir, "docker-compose.yml")}},
		Environment: env,
	}, func(o *loader.Options) {
		o.SetProjectName("boxfleet", true)
		o.Profiles = profiles
	})
	if err != nil {
		t.Fatalf("loading docker-compose.yml with profiles %v: %v", profiles, err)
	}
	return p
}

func TestComposeLoads(t *testing.T) {
	_, dir := stage(t)
	p := load(t, dir)
	if got := sortedKeys(p.Services); !slices.Equal(got, controlPlane) {
		t.Errorf("default services = %v, want %v", got, controlPlane)
	}
	all := load(t, dir, "demo-node")
	want := slices.Sorted(slices.Values(append(slices.Clone(controlPlane), demoNode...)))
	if got := sortedKeys(all.Services); !slices.Equal(got, want) {
		t.Errorf("demo-node services = %v, want %v", got, want)
	}
	cluster := load(t, dir, "vm-cluster")
	want = slices.Sorted(slices.Values(append(slices.Clone(controlPlane), vmCluster...)))
	if got := sortedKeys(cluster.Services); !slices.Equal(got, want) {
		t.Errorf("vm-cluster services = %v, want %v", got, want)
	}
}

// Every file compose reads from the host must be in the repository, or be a
// secret gen-secrets.sh creates; secrets themselves never are in git.
func TestComposeFilesExist(t *testing.T) {
	root, dir := stage(t)
	p := load(t, dir, allProfiles...)
	inRepo := func(path string) string {
		rel, err := filepath.Rel(dir, path)
		if err != nil || strings.HasPrefix(rel, "..") {
			t.Fatalf("%s is outside the project", path)
		}
		return filepath.Join(root, rel)
	}
	for name, s := range p.Services {
		if s.Build != nil {
			mustExist(t, name+" build context", inRepo(s.Build.Context))
			mustExist(t, name+" Dockerfile", inRepo(filepath.Join(s.Build.Context, s.Build.Dockerfile)))
		}
		for _, v := range s.Volumes {
			if v.Type == types.VolumeTypeBind {
				mustExist(t, name+" bind mount", inRepo(v.Source))
			}
		}
	}
	for name, s := range p.Secrets {
		if s.File == "" {
			t.Errorf("secret %s is not a file", name)
			continue
		}
		mustExist(t, "secret "+name+" (from gen-secrets.sh)", s.File)
	}
	out, err := exec.Command("git", "-C", root, "ls-files", "docker/secrets").Output()
	if err != nil {
		t.Fatal(err)
	}
	for f := range strings.FieldsSeq(string(out)) {
		if f != "docker/secrets/.gitignore" {
			t.Errorf("%s is committed: secrets belong in generated files only", f)
		}
	}
}

// Named volumes: each one a service mounts is declared, each declared one
// is used, and every service that keeps state keeps it in a volume.
func TestComposeVolumes(t *testing.T) {
	_, dir := stage(t)
	p := load(t, dir, allProfiles...)
	used := map[string]bool{}
	for name, s := range p.Services {
		for _, v := range s.Volumes {
			if v.Type != types.VolumeTypeVolume {
				continue
			}
			used[v.Source] = true
			if _, ok := p.Volumes[v.Source]; !ok {
				t.Errorf("%s mounts undeclared volume %s", name, v.Source)
			}
		}
	}
	for v := range p.Volumes {
		if !used[v] {
			t.Errorf("volume %s is declared but no service mounts it", v)
		}
	}
	state := map[string]string{
		"boxfleet": "/var/lib/boxfleet", "mysql": "/var/lib/mysql", "prometheus": "/prometheus",
		"alertmanager": "/alertmanager", "grafana": "/var/lib/grafana", "singbox-exporter": "/node",
		"vmstorage-1": "/storage", "vmstorage-2": "/storage",
		"vmagent-control": "/vmagent-data", "vmagent-region": "/vmagent-data",
	}
	for svc, target := range state {
		if m, ok := mountAt(p.Services[svc], target); !ok || m.Type != types.VolumeTypeVolume {
			t.Errorf("%s keeps state in %s but no named volume is mounted there", svc, target)
		}
	}
}

// The in-network addresses in the shipped configs and in the services'
// flags must name a service and a port it listens on: a typo here is a
// control plane that starts and then silently scrapes nothing.
func TestComposeAddressesMatchServices(t *testing.T) {
	root, dir := stage(t)
	p := load(t, dir, allProfiles...)
	ports := listenPorts(t, p)
	check := func(where, s string) {
		for _, m := range hostPort.FindAllStringSubmatch(s, -1) {
			host, port := m[1], m[2]
			if host == "localhost" || strings.Contains(host, ".") {
				continue
			}
			if !ports[host][port] {
				t.Errorf("%s: %s:%s is not a port of a compose service (listening: %v)", where, host, port, ports[host])
			}
		}
	}
	for name, s := range p.Services {
		for _, arg := range s.Command {
			check(name+" flag "+arg, arg)
		}
	}
	dsn, err := os.ReadFile(p.Secrets["boxfleet_db_dsn"].File)
	if err != nil {
		t.Fatal(err)
	}
	check("the DSN gen-secrets.sh writes", string(dsn))
	for _, f := range []string{"prometheus/prometheus.yml", "prometheus/alertmanager.yml", "dashboards/provisioning/datasources/prometheus.yml",
		"deploy/vm-cluster/vmagent-region.yml", "deploy/vm-cluster/vmagent-control.yml"} {
		for _, s := range yamlStrings(t, filepath.Join(root, f)) {
			check(f, s)
		}
	}
	// Prometheus must actually be told about each piece it scrapes or sends to.
	promConfig := strings.Join(yamlStrings(t, filepath.Join(root, "prometheus/prometheus.yml")), "\n")
	for _, want := range []string{"boxfleet:8080", "alertmanager:9093", "blackbox:9115"} {
		if !strings.Contains(promConfig, want) {
			t.Errorf("prometheus/prometheus.yml never mentions %s", want)
		}
	}
	amConfig := strings.Join(yamlStrings(t, filepath.Join(root, "prometheus/alertmanager.yml")), "\n")
	if !strings.Contains(amConfig, "http://boxfleet:8080/api/v1/alerts") {
		t.Errorf("prometheus/alertmanager.yml does not send to the controller's webhook http://boxfleet:8080/api/v1/alerts")
	}
}

// hostPort finds host:port in URLs, targets, flag values and comma-separated
// lists; hosts without a dot are compose service names.
var hostPort = regexp.MustCompile(`(?:^|[/=\s"'(@,])([a-z][a-z0-9_-]*):(\d{2,5})\b`)

// listenPorts maps each service (and, for network_mode service:X, X) to
// the container ports it listens on: expose, published ports, and the
// port of its --web.listen-address (VictoriaMetrics: -httpListenAddr),
// which must be among them.
func listenPorts(t *testing.T, p *types.Project) map[string]map[string]bool {
	t.Helper()
	out := map[string]map[string]bool{}
	for name, s := range p.Services {
		set := map[string]bool{}
		for _, e := range s.Expose {
			set[e] = true
		}
		for _, pt := range s.Ports {
			set[strconv.Itoa(int(pt.Target))] = true
		}
		out[name] = set
	}
	for name, s := range p.Services {
		owner := name
		if after, ok := strings.CutPrefix(s.NetworkMode, "service:"); ok {
			owner = after
		}
		for _, arg := range s.Command {
			v, ok := strings.CutPrefix(arg, "--web.listen-address=")
			if !ok {
				v, ok = strings.CutPrefix(arg, "-httpListenAddr=")
			}
			if ok {
				port := v[strings.LastIndex(v, ":")+1:]
				if !out[owner][port] {
					t.Errorf("%s listens on %s but %s neither exposes nor publishes it", name, port, owner)
				}
			}
		}
	}
	return out
}

// Every path a container reads (a flag ending in "file", an env *_FILE, a
// *_file or rule_files/templates entry in a mounted config) must be a
// secret or lie under a mount, and what the mount brings from the host must
// exist; paths under named volumes are created at run time.
func TestComposeContainerPathsAreMounted(t *testing.T) {
	root, dir := stage(t)
	p := load(t, dir, allProfiles...)
	for name, s := range p.Services {
		var paths []string
		args := append(slices.Clone([]string(s.Entrypoint)), s.Command...)
		for _, arg := range args {
			// --flag=/path, and VictoriaMetrics's -flag=/path
			if _, v, ok := strings.Cut(arg, "="); ok && strings.HasPrefix(arg, "-") {
				arg = v
			}
			if strings.HasPrefix(arg, "/") {
				paths = append(paths, arg)
			}
		}
		for k, v := range s.Environment {
			if strings.HasSuffix(k, "_FILE") || strings.HasSuffix(k, "_PATH") {
				paths = append(paths, *v)
			}
		}
		for _, v := range s.Volumes {
			if v.Type == types.VolumeTypeBind && strings.HasSuffix(v.Source, ".yml") {
				paths = append(paths, configFileRefs(t, v.Source)...)
			}
			if v.Type == types.VolumeTypeBind && strings.HasSuffix(v.Target, "/provisioning/dashboards") {
				paths = append(paths, grafanaProviderPaths(t, v.Source)...)
			}
		}
		for _, path := range paths {
			checkMounted(t, root, dir, name, s, path)
		}
	}
}

// Paths every image brings itself: its shell and binaries.
var imagePaths = []string{"/bin/", "/usr/"}

func checkMounted(t *testing.T, root, dir, svc string, s types.ServiceConfig, path string) {
	t.Helper()
	for _, sec := range s.Secrets {
		if sec.Target == path {
			return
		}
	}
	m, ok := mountAt(s, path)
	if !ok {
		for _, prefix := range imagePaths {
			if strings.HasPrefix(path, prefix) {
				return
			}
		}
		t.Errorf("%s reads %s, which is neither a secret nor under a mount", svc, path)
		return
	}
	if m.Type != types.VolumeTypeBind {
		return
	}
	rel, _ := filepath.Rel(dir, m.Source)
	host := filepath.Join(root, rel, strings.TrimPrefix(path, m.Target))
	if matches, _ := filepath.Glob(host); len(matches) == 0 {
		t.Errorf("%s reads %s, mounted from %s, which has no such file in the repository", svc, path, host)
	}
}

// mountAt returns the mount that holds path, the longest target first.
func mountAt(s types.ServiceConfig, path string) (types.ServiceVolumeConfig, bool) {
	var best types.ServiceVolumeConfig
	found := false
	for _, v := range s.Volumes {
		if (path == v.Target || strings.HasPrefix(path, v.Target+"/")) && len(v.Target) > len(best.Target) {
			best, found = v, true
		}
	}
	return best, found
}

// configFileRefs returns the container paths a mounted YAML config reads.
func configFileRefs(t *testing.T, file string) []string {
	t.Helper()
	var out []string
	walkYAML(readYAML(t, file), "", func(key, value string) {
		if strings.HasSuffix(key, "_file") || key == "rule_files" || key == "templates" {
			out = append(out, value)
		}
	})
	return out
}

func grafanaProviderPaths(t *testing.T, dir string) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.yml"))
	var out []string
	for _, f := range files {
		walkYAML(readYAML(t, f), "", func(key, value string) {
			if key == "path" {
				out = append(out, value+"/*.json")
			}
		})
	}
	if len(out) == 0 {
		t.Errorf("no dashboard provider path in %s", dir)
	}
	return out
}

// Grafana's datasource interval must match Prometheus's scrape interval, or
// $__rate_interval can be shorter than two scrapes and rate() goes blank.
func TestGrafanaIntervalMatchesScrapeInterval(t *testing.T) {
	root := testbin.RepoRoot(t)
	var prom struct {
		Global struct {
			ScrapeInterval string `yaml:"scrape_interval"`
		} `yaml:"global"`
	}
	var ds struct {
		Datasources []struct {
			Type     string `yaml:"type"`
			JSONData struct {
				TimeInterval string `yaml:"timeInterval"`
			} `yaml:"jsonData"`
		} `yaml:"datasources"`
	}
	unmarshalFile(t, filepath.Join(root, "prometheus/prometheus.yml"), &prom)
	unmarshalFile(t, filepath.Join(root, "dashboards/provisioning/datasources/prometheus.yml"), &ds)
	for _, d := range ds.Datasources {
		if d.Type == "prometheus" && d.JSONData.TimeInterval != prom.Global.ScrapeInterval {
			t.Errorf("Grafana timeInterval %q, Prometheus scrape_interval %q", d.JSONData.TimeInterval, prom.Global.ScrapeInterval)
		}
	}
}

// The flags compose passes must be flags our binaries accept: kingpin
// parses every flag before it acts on --help, so an unknown or misspelt one
// fails here instead of in a crash-looping container.
func TestComposeFlagsAcceptedByBinaries(t *testing.T) {
	_, dir := stage(t)
	p := load(t, dir, allProfiles...)
	for svc, pkg := range map[string]string{"boxfleet": "./cmd/boxfleet", "singbox-exporter": "./cmd/singbox_exporter"} {
		exe := staticBuild(t, pkg)
		args := append(slices.Clone([]string(p.Services[svc].Command)), "--help")
		if out, err := exec.Command(exe, args...).CombinedOutput(); err != nil {
			t.Errorf("%s rejects the flags of compose service %s: %v\n%s", filepath.Base(exe), svc, err, lastLines(out, 3))
		}
	}
}

func mustExist(t *testing.T, what, path string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		t.Errorf("%s: %v", what, err)
	}
}

func readYAML(t *testing.T, file string) any {
	t.Helper()
	var v any
	unmarshalFile(t, file, &v)
	return v
}

func unmarshalFile(t *testing.T, file string, v any) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

// walkYAML calls fn for every string scalar with the key it sits under
// (list items inherit their list's key).
func walkYAML(v any, key string, fn func(key, value string)) {
	switch n := v.(type) {
	case map[any]any:
		for k, child := range n {
			walkYAML(child, k.(string), fn)
		}
	case []any:
		for _, child := range n {
			walkYAML(child, key, fn)
		}
	case string:
		fn(key, n)
	}
}

func yamlStrings(t *testing.T, file string) []string {
	t.Helper()
	var out []string
	walkYAML(readYAML(t, file), "", func(_, v string) { out = append(out, v) })
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	})
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
