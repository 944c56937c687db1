package releasetest

import (
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
	"golang.org/x/mod/zip"
)

// root is the repository's root directory, two levels above this module.
func root(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func readMod(t *testing.T, dir string) *modfile.File {
	t.Helper()
	name := filepath.Join(dir, "go.mod")
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	f, err := modfile.Parse(name, b, nil)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// Every go.mod in the repository is used by go.work, so that
// `go test github.com/seed351623e9/presence/...` reaches every package.
func TestWorkspaceListsEveryModule(t *testing.T) {
	dir := root(t)
	b, err := os.ReadFile(filepath.Join(dir, "go.work"))
	if err != nil {
		t.Fatal(err)
	}
	work, err := modfile.ParseWork("go.work", b, nil)
	if err != nil {
		t.Fatal(err)
	}
	var used, found []string
	for _, u := range work.Use {
		used = append(used, filepath.Clean(u.Path))
	}
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != dir && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
			return filepath.SkipDir // the go command ignores these too
		}
		if d.Name() == "go.mod" && !d.IsDir() {
			rel, _ := filepath.Rel(dir, filepath.Dir(path))
			found = append(found, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(used)
	slices.Sort(found)
	if !slices.Equal(used, found) {
		t.Fatalf("go.work uses %q, but the repository's modules are %q", used, found)
	}
}

const rootPath = "github.com/seed351623e9/presence"

// released are the modules a user installs, by directory under the root.
var released = map[string]string{
	".":             rootPath,
	"presenceprom":  rootPath + "/presenceprom",
	"presenceredis": rootPath + "/presenceredis",
}

// releaseVersion is the version of presence that the nested modules
// require: the version a release tags, root and nested modules alike.
func releaseVersion(t *testing.T) string {
	t.Helper()
	version := ""
	for dir, path := range released {
		if dir == "." {
			continue
		}
		f := readMod(t, filepath.Join(root(t), dir))
		if f.Module.Mod.Path != path {
			t.Fatalf("%s/go.mod declares %s, want %s", dir, f.Module.Mod.Path, path)
		}
		i := slices.IndexFunc(f.Require, func(r *modfile.Require) bool { return r.Mod.Path == rootPath })
		if i < 0 {
			t.Fatalf("%s/go.mod does not require %s", dir, rootPath)
		}
		v := f.Require[i].Mod.Version
		if version != "" && v != version {
			t.Fatalf("the nested modules require different versions of presence: %s and %s", v, version)
		}
		version = v
	}
	if version == "v0.0.0" {
		t.Fatalf("the nested modules require presence v0.0.0, which no tag can provide")
	}
	return version
}

// writeProxy lays out a file-based module proxy in dir (the GOPROXY
// protocol: list, .info, .mod and .zip under @v) that serves every
// released module at version, zipped from the working tree.
func writeProxy(t *testing.T, dir, version string) {
	t.Helper()
	for src, path := range released {
		src = filepath.Join(root(t), src)
		esc, err := module.EscapePath(path)
		if err != nil {
			t.Fatal(err)
		}
		at := filepath.Join(dir, esc, "@v")
		if err := os.MkdirAll(at, 0o755); err != nil {
			t.Fatal(err)
		}
		info, _ := json.Marshal(map[string]any{"Version": version, "Time": time.Now().UTC()})
		mod, err := os.ReadFile(filepath.Join(src, "go.mod"))
		if err != nil {
			t.Fatal(err)
		}
		for name, b := range map[string][]byte{"list": []byte(version + "\n"), version + ".info": info, version + ".mod": mod} {
			if err := os.WriteFile(filepath.Join(at, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		z, err := os.Create(filepath.Join(at, version+".zip"))
		if err != nil {
			t.Fatal(err)
		}
		// CreateFromDir leaves out nested modules, as the go command does.
		if err := zip.CreateFromDir(z, module.Version{Path: path, Version: version}, src); err != nil {
			t.Fatalf("zip %s: %v", path, err)
		}
		if err := z.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// consumer is a program outside this repository that uses both nested
// modules; it prints a line only if both work.
const consumer = `package main

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/seed351623e9/presence"
	"github.com/seed351623e9/presence/presenceprom"
	"github.com/seed351623e9/presence/presenceredis"
)

func main() {
	r := presence.New(presence.WithCounters())
	if err := r.Heartbeat(presence.Key{Queue: "orders", Group: "workers", Consumer: "w1"}, 1, time.Now()); err != nil {
		panic(err)
	}
	metrics := prometheus.NewRegistry()
	metrics.MustRegister(presenceprom.New(r, presenceprom.Options{}))
	families, err := metrics.Gather()
	if err != nil {
		panic(err)
	}
	active := 0.0
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if f.GetName() == "presence_consumers" && l.GetName() == "state" && l.GetValue() == "active" {
					active += m.GetGauge().GetValue()
				}
			}
		}
	}
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // never dialled: no Run, no Flush
	m := presenceredis.New(r, rdb, presenceredis.Options{})
	fmt.Printf("active consumers: %v; mirror created: %v\n", active, m != nil)
}
`

// The nested modules install as a user outside this repository installs
// them: from a module proxy, at the version they require of presence, in a
// fresh module with no replace directive and no workspace. The proxy is a
// directory built from the working tree; the third-party modules
// (client_golang, go-redis) come from the environment's own GOPROXY.
func TestNestedModulesInstallFromAProxy(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatal(err)
	}
	version := releaseVersion(t)
	proxy := t.TempDir()
	writeProxy(t, proxy, version)
	upstream, err := exec.Command(goBin, "env", "GOPROXY").Output()
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir() // outside the repository: no go.work above it
	must(t, os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module example.com/consumer\n\ngo 1.24\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "main.go"), []byte(consumer), 0o644))
	env := append(os.Environ(),
		"GOWORK=off",
		"GOFLAGS=-mod=mod -modcacherw -trimpath", // -modcacherw: t.TempDir can remove the module cache; -trimpath: builds cached across runs
		"GOPROXY=file://"+filepath.ToSlash(proxy)+","+strings.TrimSpace(string(upstream)),
		"GOPRIVATE=", "GONOPROXY=", // ours come from the proxy, not from a VCS
		"GONOSUMDB="+rootPath,     // the checksum database cannot know an unpublished tag; third-party modules are still checked
		"GOMODCACHE="+t.TempDir(), // not the user's cache: it must never hold this pretend release
		"GOTOOLCHAIN=local",
	)
	goCmd := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(goBin, args...)
		cmd.Dir, cmd.Env = dir, env
		start := time.Now()
		out, err := cmd.CombinedOutput()
		t.Logf("go %s: %v", strings.Join(args, " "), time.Since(start).Round(time.Millisecond))
		if err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	goCmd("get", released["presenceprom"]+"@"+version, released["presenceredis"]+"@"+version)
	goCmd("mod", "tidy")
	for _, path := range released {
		got := strings.TrimSpace(goCmd("list", "-m", "-f", "{{.Version}} {{.Replace}}", path))
		if want := version + " <nil>"; got != want {
			t.Errorf("go list -m %s = %q, want %q", path, got, want)
		}
	}
	if f := readMod(t, dir); len(f.Replace) != 0 {
		t.Errorf("the consumer's go.mod has replace directives: %v", f.Replace)
	}
	out := goCmd("run", ".")
	if want := "active consumers: 1; mirror created: true\n"; out != want {
		t.Fatalf("the consumer printed %q, want %q", out, want)
	}
	t.Logf("installed %s, %s and %s at %s from %s", released["."], released["presenceprom"], released["presenceredis"], version, proxy)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
