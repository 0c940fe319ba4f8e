package policy

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// TestFileSuffix marks policy test files, which Load skips in folders
// (and so does it the .yml spelling, _test.yml).
const TestFileSuffix = "_test.yaml"

// Load reads a policy set from the files Files lists. It returns an
// ErrorList holding every problem found, sorted by file and line, or the
// validated set.
func Load(paths ...string) (*Set, error) {
	files, err := Files(paths...)
	if err != nil {
		return nil, err
	}
	srcs := make([]Source, 0, len(files))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("policy: %w", err)
		}
		srcs = append(srcs, Source{Name: f, Data: b})
	}
	return Parse(srcs...)
}

// Source is one policy file's name and content.
type Source struct {
	Name string
	Data []byte
}

// Files lists the policy files that paths name: each file given, and every
// *.yaml and *.yml file in and below each folder given, except test files
// (*_test.yaml, *_test.yml). Load reads these; a watcher that reloads the
// policy should watch these and no others.
func Files(paths ...string) ([]string, error) {
	if len(paths) == 0 {
		return nil, errors.New("policy: no policy files given")
	}
	var out []string
	for _, p := range paths {
		info, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("policy: %w", err)
		}
		if !info.IsDir() {
			out = append(out, p)
			continue
		}
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			if ext := filepath.Ext(path); (ext == ".yaml" || ext == ".yml") && !isTestFile(path) {
				out = append(out, path)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("policy: %w", err)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("policy: no *.yaml files in %s", strings.Join(paths, ", "))
	}
	return out, nil
}

func isTestFile(path string) bool {
	return strings.HasSuffix(path, TestFileSuffix) || strings.HasSuffix(path, "_test.yml")
}

// file is one parsed policy document with its reader.
type file struct {
	r    *reader
	root map[string]*yaml.Node
}

// Parse validates a policy set given as sources.
func Parse(srcs ...Source) (*Set, error) {
	var errs ErrorList
	set := &Set{Subject: map[string]Type{}, Resources: map[string]*Resource{}, Location: time.UTC}
	for k, v := range builtinSubject {
		set.Subject[k] = v
	}
	var docs []file
	for _, src := range srcs {
		set.Files = append(set.Files, src.Name)
		r := &reader{file: src.Name, lines: strings.Split(string(src.Data), "\n"), errs: &errs}
		var doc yaml.Node
		if err := yaml.Unmarshal(src.Data, &doc); err != nil {
			r.errorAt(yamlErrPos(src.Name, err), CodeYAML, "%s", yamlErrMsg(err))
			continue
		}
		if len(doc.Content) == 0 {
			r.errorAt(Pos{File: src.Name, Line: 1, Col: 1}, CodeMissing, "empty policy file: it needs version: 1 and resources")
			continue
		}
		top := doc.Content[0]
		root := r.fields(top, "the policy file", "version", "subject", "context", "resources", "unfiltered", "guardrails")
		r.require(top, root, "the policy file", "version", "resources")
		if v := root["version"]; v != nil && v.Value != "1" {
			r.errorf(v, CodeInvalid, "unsupported version %q: this ragfence reads version 1", v.Value)
		}
		readSubject(r, root["subject"], set)
		readContext(r, root["context"], set)
		set.Unfiltered = append(set.Unfiltered, readUnfiltered(r, root["unfiltered"])...)
		docs = append(docs, file{r: r, root: root})
	}
	// Resources are read after every file's subject section, so a condition
	// may use an attribute declared in another file of the set.
	for _, d := range docs {
		for _, kv := range d.r.entries(d.root["resources"], "resources") {
			name := kv[0].Value
			if prev, dup := set.Resources[name]; dup {
				d.r.errorf(kv[0], CodeDuplicate, "resource %q is already defined at %s", name, prev.Pos)
				continue
			}
			if res := readResource(d.r, kv[0], kv[1], set); res != nil {
				set.Resources[name] = res
			}
		}
	}
	// Guardrails come last: they name resources of any file.
	seen := map[string]*Guardrail{}
	for _, d := range docs {
		set.Guardrails = append(set.Guardrails, readGuardrails(d.r, d.root["guardrails"], set, seen)...)
	}
	if len(errs) > 0 {
		errs.sort()
		return nil, errs
	}
	for n := range set.Resources {
		set.Names = append(set.Names, n)
	}
	sort.Strings(set.Names)
	set.version = canonicalVersion(set)
	return set, nil
}

func readSubject(r *reader, n *yaml.Node, set *Set) {
	f := r.fields(n, "subject", "attributes")
	for _, kv := range r.entries(f["attributes"], "subject.attributes") {
		name, typ := kv[0].Value, Type(r.str(kv[1], "attribute type", ""))
		if _, builtin := builtinSubject[name]; builtin {
			r.errorf(kv[0], CodeDuplicate, "subject.%s is built in; declare only extra attributes", name)
			continue
		}
		if !validIdent(name, false) {
			r.errorf(kv[0], CodeInvalid, "attribute name %q must be a lower-case SQL name", name)
			continue
		}
		if !slices.Contains(declarableTypes, typ) {
			r.errorf(kv[1], CodeInvalid, "attribute %q has type %q; use one of %s", name, typ, typeList())
			continue
		}
		if prev, ok := set.Subject[name]; ok && prev != typ {
			r.errorf(kv[1], CodeDuplicate, "attribute %q is declared as %s elsewhere in the set", name, prev)
			continue
		}
		set.Subject[name] = typ
	}
}

func typeList() string {
	s := make([]string, len(declarableTypes))
	for i, t := range declarableTypes {
		s[i] = string(t)
	}
	return strings.Join(s, ", ")
}

func readContext(r *reader, n *yaml.Node, set *Set) {
	f := r.fields(n, "context", "timezone")
	if tz := f["timezone"]; tz != nil {
		loc, err := time.LoadLocation(r.str(tz, "timezone", "UTC"))
		if err != nil {
			r.errorf(tz, CodeInvalid, "unknown time zone %q: use an IANA name such as Europe/Berlin", tz.Value)
			return
		}
		set.Location = loc
	}
}

func readUnfiltered(r *reader, n *yaml.Node) []string {
	var out []string
	list, nodes := r.strListNodes(n, "unfiltered")
	for i, t := range list {
		if !validIdent(t, true) {
			r.errorf(nodes[i], CodeInvalid, "unfiltered table %q must be a lower-case SQL name, optionally schema-qualified", t)
			continue
		}
		out = append(out, t)
	}
	return out
}

// yamlErrPos extracts "line N" from a yaml.v3 error message.
func yamlErrPos(name string, err error) Pos {
	p := Pos{File: name, Line: 1, Col: 1}
	msg := err.Error()
	if i := strings.Index(msg, "line "); i >= 0 {
		fmt.Sscanf(msg[i:], "line %d", &p.Line)
	}
	return p
}

func yamlErrMsg(err error) string {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if i := strings.Index(msg, ": "); i >= 0 && strings.HasPrefix(msg, "line ") {
		msg = msg[i+2:]
	}
	return "invalid YAML: " + msg
}
