package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"sort"
	"strings"

	"github.com/ragfence/ragfence/internal/deparse"
)

// canonicalVersion hashes what the set means, in a fixed order: names,
// declarations and conditions as PostgreSQL's deparser writes their parse
// trees. Comments, key order and file layout do not change it; any change
// of a literal does, whitespace inside it included.
func canonicalVersion(s *Set) string {
	h := sha256.New()
	w := func(parts ...any) { fmt.Fprintln(h, parts...) }
	w("ragfence-policy/1", s.Location.String())
	for _, k := range keys(s.Subject) {
		w("subject", k, s.Subject[k])
	}
	unf := append([]string(nil), s.Unfiltered...)
	sort.Strings(unf)
	w("unfiltered", strings.Join(unf, ","))
	for _, name := range keys(s.Resources) {
		writeResource(h, s.Resources[name])
	}
	writeGuardrails(h, s.Guardrails)
	return hex.EncodeToString(h.Sum(nil))[:16]
}

func writeResource(h hash.Hash, r *Resource) {
	w := func(parts ...any) { fmt.Fprintln(h, parts...) }
	w("resource", r.Name, r.Table, r.Tenant, r.ID, r.Content, r.Embedding, r.Metadata)
	w("columns", strings.Join(r.Columns, ","), r.Columns == nil)
	w("filterable", strings.Join(r.Filterable, ","))
	if r.Document != "" {
		w("document", r.Document) // only when set, so older sets keep their versions
	}
	for _, k := range keys(r.Relations) {
		rel := r.Relations[k]
		w("relation", rel.Name, rel.Table, rel.Tenant, strings.Join(rel.Columns, ","))
	}
	rules := func(rs []*Rule) {
		for _, rule := range rs {
			w("rule", rule.Agent, rule.Effect, rule.Name, canonical(rule.When))
		}
	}
	rules(r.Allow)
	rules(r.Deny)
	for _, m := range r.Masks {
		w("mask", m.Column, canonical(m.Unless))
	}
	for _, k := range keys(r.Agents) {
		w("agent", k)
		rules(r.Agents[k].Allow)
		rules(r.Agents[k].Deny)
		for _, a := range r.Agents[k].Approval {
			w("approval", a.Agent, a.Name, canonical(a.When), a.TTL)
		}
	}
}

// canonical is the condition deparsed from its parse tree, or its exact
// text if it has none (so any edit still changes the version). Folding
// whitespace in the text instead would merge runs inside string literals,
// and two policies that filter differently would share a version.
func canonical(c *Condition) string {
	if c == nil {
		return ""
	}
	if c.expr == nil {
		return c.Text
	}
	sql, err := deparse.Expr(c.expr)
	if err != nil {
		return c.Text
	}
	return "SELECT " + sql // as versions were computed before deparse was faithful
}
