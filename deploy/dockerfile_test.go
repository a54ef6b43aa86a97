package deploy

import (
	"bufio"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/boxfleet/boxfleet/internal/testbin"
)

// dockerStage is one FROM block of a Dockerfile.
type dockerStage struct {
	name, base string
	lines      []string // instructions after FROM, continuation lines joined
}

func parseDockerfile(t *testing.T, path string) []dockerStage {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var stages []dockerStage
	var cur strings.Builder
	flush := func() {
		line := strings.TrimSpace(cur.String())
		cur.Reset()
		if line == "" || strings.HasPrefix(line, "#") {
			return
		}
		if fields := strings.Fields(line); strings.EqualFold(fields[0], "FROM") {
			s := dockerStage{base: fields[1]}
			if len(fields) == 4 && strings.EqualFold(fields[2], "AS") {
				s.name = fields[3]
			}
			stages = append(stages, s)
			return
		}
		if len(stages) > 0 {
			stages[len(stages)-1].lines = append(stages[len(stages)-1].lines, line)
		}
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		if body, ok := strings.CutSuffix(line, "\\"); ok {
			cur.WriteString(body + " ")
			continue
		}
		cur.WriteString(line)
		flush()
	}
	return stages
}

// Runtime images: no shell, no package manager, CA certificates included.
var runtimeBases = []string{"gcr.io/distroless/static-debian12:nonroot", "gcr.io/distroless/static-debian13:nonroot"}

var goBuildPkg = regexp.MustCompile(`go build .*?(\./cmd/\w+)`)

// Multi-stage, static, non-root, small: what the issue asks of our images,
// read from the Dockerfiles compose builds.
func TestDockerfiles(t *testing.T) {
	_, dir := stage(t)
	root := testbin.RepoRoot(t)
	p := load(t, dir, "demo-node")
	for svc, s := range p.Services {
		if s.Build == nil {
			continue
		}
		rel, _ := filepath.Rel(dir, filepath.Join(s.Build.Context, s.Build.Dockerfile))
		stages := parseDockerfile(t, filepath.Join(root, rel))
		if len(stages) < 2 {
			t.Errorf("%s: %d stage(s), want a build stage and a runtime stage", rel, len(stages))
			continue
		}
		// The image compose runs: the named target, else the last stage.
		runtime := stages[len(stages)-1]
		if s.Build.Target != "" {
			i := slices.IndexFunc(stages, func(st dockerStage) bool { return st.name == s.Build.Target })
			if i < 0 {
				t.Errorf("%s: compose service %s builds target %q, which %s does not define", rel, svc, s.Build.Target, rel)
				continue
			}
			runtime = stages[i]
		}
		for _, st := range []dockerStage{runtime, stages[len(stages)-1]} {
			checkRuntimeStage(t, rel, st, stages)
		}
		var built []string
		for _, st := range stages {
			for _, l := range st.lines {
				if m := goBuildPkg.FindStringSubmatch(l); m != nil {
					built = append(built, m[1])
					if !strings.Contains(l, "CGO_ENABLED=0") {
						t.Errorf("%s: go build without CGO_ENABLED=0: the binary would need libc, which the runtime image lacks", rel)
					}
					mustExist(t, rel+" builds", filepath.Join(root, m[1]))
				}
			}
		}
		if len(built) != 1 {
			t.Errorf("%s: builds %v, want exactly one command", rel, built)
		}
	}
}

func checkRuntimeStage(t *testing.T, rel string, st dockerStage, all []dockerStage) {
	t.Helper()
	if !slices.Contains(runtimeBases, st.base) {
		t.Errorf("%s: runtime stage %q is based on %s, want one of %v", rel, st.name, st.base, runtimeBases)
	}
	user := ""
	for _, l := range st.lines {
		f := strings.Fields(l)
		switch strings.ToUpper(f[0]) {
		case "USER":
			user = f[1]
		case "RUN":
			t.Errorf("%s: runtime stage %q runs %q: the base has no shell", rel, st.name, l)
		case "COPY":
			for _, arg := range f[1:] {
				from, ok := strings.CutPrefix(arg, "--from=")
				if ok && !strings.Contains(from, "/") && !slices.ContainsFunc(all, func(s dockerStage) bool { return s.name == from }) {
					t.Errorf("%s: COPY --from=%s names no stage", rel, from)
				}
			}
		}
	}
	uid, _, _ := strings.Cut(user, ":")
	if uid == "" || uid == "0" || uid == "root" {
		t.Errorf("%s: runtime stage %q runs as %q, want an unprivileged user", rel, st.name, user)
	}
}

// The binaries build with CGO off and come out static: no ELF interpreter,
// so they start on distroless/static.
func TestBinariesAreStatic(t *testing.T) {
	for _, pkg := range []string{"./cmd/boxfleet", "./cmd/singbox_exporter"} {
		f, err := elf.Open(staticBuild(t, pkg))
		if err != nil {
			t.Fatal(err)
		}
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP {
				t.Errorf("%s is dynamically linked", pkg)
			}
		}
		f.Close()
	}
}

// What the .dockerignore files leave out must not include a package the
// binaries import, or the image build fails where go build here does not.
func TestDockerignoreKeepsSources(t *testing.T) {
	root := testbin.RepoRoot(t)
	ignores, _ := filepath.Glob(filepath.Join(root, "docker", "*.dockerignore"))
	if len(ignores) == 0 {
		t.Fatal("no docker/*.dockerignore: the build context would carry .git, caches and secrets")
	}
	list := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.Dir}}{{end}}", "./cmd/boxfleet", "./cmd/singbox_exporter")
	list.Dir = root
	out, err := list.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, ig := range ignores {
		b, err := os.ReadFile(ig)
		if err != nil {
			t.Fatal(err)
		}
		var patterns []string
		for l := range strings.SplitSeq(string(b), "\n") {
			if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
				patterns = append(patterns, l)
			}
		}
		if !slices.Contains(patterns, "docker/secrets") {
			t.Errorf("%s does not leave out docker/secrets", ig)
		}
		for d := range strings.FieldsSeq(string(out)) {
			rel, err := filepath.Rel(root, d)
			if err != nil || strings.HasPrefix(rel, "..") {
				continue // a module dependency, fetched by go mod download
			}
			for _, pat := range patterns {
				if rel == pat || strings.HasPrefix(rel, pat+"/") {
					t.Errorf("%s leaves out %s, which the binaries import", filepath.Base(ig), rel)
				}
			}
		}
	}
}

var (
	buildMu sync.Mutex
	builds  = map[string]string{}
	binDir  string
)

// staticBuild builds a command the way the Dockerfiles do, once per test
// binary.
func staticBuild(t *testing.T, pkg string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if exe, ok := builds[pkg]; ok {
		return exe
	}
	if binDir == "" {
		var err error
		if binDir, err = os.MkdirTemp("", "boxfleet-deploy-"); err != nil {
			t.Fatal(err)
		}
	}
	exe := filepath.Join(binDir, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-trimpath", "-o", exe, pkg)
	cmd.Dir = testbin.RepoRoot(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("CGO_ENABLED=0 go build %s: %v\n%s", pkg, err, out)
	}
	builds[pkg] = exe
	return exe
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}
