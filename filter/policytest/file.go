package policytest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"slices"

	"gopkg.in/yaml.v3"

	"github.com/ragfence/ragfence/policy"
)

// File is one policy test file.
type File struct {
	Name     string
	Schema   string                      `yaml:"schema"`
	Fixtures map[string][]map[string]any `yaml:"fixtures"`
	Subjects map[string]subjectYAML      `yaml:"subjects"`
	Cases    []Case                      `yaml:"cases"`
	// fixtureOrder keeps the tables in file order, so rows referencing
	// earlier tables (foreign keys) insert cleanly.
	fixtureOrder []string
}

// Case is one expectation: a subject (and maybe an agent and a context)
// sees exactly the ids in See, or is refused with Error.
type Case struct {
	Name     string           `yaml:"name"`
	Resource string           `yaml:"resource"`
	Subject  yaml.Node        `yaml:"subject"`
	Agent    string           `yaml:"agent"`
	Context  *contextYAML     `yaml:"context"`
	See      []any            `yaml:"see"`
	Masked   map[string][]any `yaml:"masked"`
	Error    string           `yaml:"error"`
	Line     int              `yaml:"-"`

	subject *policy.Subject
	hasSee  bool
}

type subjectYAML struct {
	ID         string         `yaml:"id" json:"id"`
	Tenant     string         `yaml:"tenant" json:"tenant"`
	Roles      []string       `yaml:"roles" json:"roles"`
	Groups     []string       `yaml:"groups" json:"groups"`
	Attributes map[string]any `yaml:"attributes" json:"attributes,omitempty"`
}

type contextYAML struct {
	Time string `yaml:"time"`
	IP   string `yaml:"ip"`
}

// ReadFile reads and checks a policy test file.
func ReadFile(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("policy test: %w", err)
	}
	return Parse(path, b)
}

// Parse parses a policy test file's content.
func Parse(name string, data []byte) (*File, error) {
	f := &File{Name: name}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(f); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	f.locate(&doc)
	if len(f.Cases) == 0 {
		return nil, fmt.Errorf("%s: no cases; add a cases: list", name)
	}
	for i := range f.Cases {
		if err := f.checkCase(&f.Cases[i]); err != nil {
			return nil, fmt.Errorf("%s:%d: case %q: %w", name, f.Cases[i].Line, f.Cases[i].Name, err)
		}
	}
	return f, nil
}

// locate records each case's line and the fixture tables' order.
func (f *File) locate(doc *yaml.Node) {
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return
	}
	top := doc.Content[0].Content
	for i := 0; i+1 < len(top); i += 2 {
		switch top[i].Value {
		case "cases":
			for j, c := range top[i+1].Content {
				if j < len(f.Cases) {
					f.Cases[j].Line = c.Line
				}
			}
		case "fixtures":
			for j := 0; j+1 < len(top[i+1].Content); j += 2 {
				f.fixtureOrder = append(f.fixtureOrder, top[i+1].Content[j].Value)
			}
		}
	}
	// The See field cannot tell "see: []" from absent after decoding.
	for j, c := range casesNode(top) {
		for k := 0; k+1 < len(c.Content); k += 2 {
			if c.Content[k].Value == "see" && j < len(f.Cases) {
				f.Cases[j].hasSee = true
			}
		}
	}
}

func casesNode(top []*yaml.Node) []*yaml.Node {
	for i := 0; i+1 < len(top); i += 2 {
		if top[i].Value == "cases" {
			return top[i+1].Content
		}
	}
	return nil
}

func (f *File) checkCase(c *Case) error {
	if c.Name == "" {
		return fmt.Errorf("every case needs a name")
	}
	if c.hasSee == (c.Error != "") {
		return fmt.Errorf("give exactly one of see: (the ids visible) or error: (the expected refusal)")
	}
	if c.Error != "" && !slices.Contains(errorCodes, c.Error) {
		return fmt.Errorf("error %q is not one of %v", c.Error, errorCodes)
	}
	s, err := f.subjectOf(&c.Subject)
	if err != nil {
		return err
	}
	c.subject = s
	return nil
}

var errorCodes = []string{"unknown_resource", "no_subject", "invalid_subject", "agent_not_granted", "invalid_alias"}

// subjectOf resolves a case's subject: a name from subjects or an inline one.
// A case without a subject tests the no-subject refusal.
func (f *File) subjectOf(n *yaml.Node) (*policy.Subject, error) {
	switch n.Kind {
	case 0:
		return nil, nil
	case yaml.ScalarNode:
		s, ok := f.Subjects[n.Value]
		if !ok {
			return nil, fmt.Errorf("subject %q is not defined; define it under the file's subjects: key", n.Value)
		}
		return toSubject(s)
	}
	var s subjectYAML
	if err := n.Decode(&s); err != nil {
		return nil, fmt.Errorf("subject: %w", err)
	}
	return toSubject(s)
}

// toSubject goes through JSON so attributes get the types a subject file
// would give them (policy.Set.CheckSubject converts them from there).
func toSubject(s subjectYAML) (*policy.Subject, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("subject: %w", err)
	}
	var out policy.Subject
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&out); err != nil {
		return nil, fmt.Errorf("subject: %w", err)
	}
	return &out, nil
}
