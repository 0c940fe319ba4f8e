package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"sort"
	"strings"
)

// canonicalVersion hashes what the set means, in a fixed order: names,
// declarations and condition texts with whitespace folded. Comments, key
// order and file layout do not change it.
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
	return hex.EncodeToString(h.Sum(nil))[:16]
}

func writeResource(h hash.Hash, r *Resource) {
	w := func(parts ...any) { fmt.Fprintln(h, parts...) }
	w("resource", r.Name, r.Table, r.Tenant, r.ID, r.Content, r.Embedding, r.Metadata)
	w("columns", strings.Join(r.Columns, ","), r.Columns == nil)
	w("filterable", strings.Join(r.Filterable, ","))
	for _, k := range keys(r.Relations) {
		rel := r.Relations[k]
		w("relation", rel.Name, rel.Table, rel.Tenant, strings.Join(rel.Columns, ","))
	}
	rules := func(rs []*Rule) {
		for _, rule := range rs {
			w("rule", rule.Agent, rule.Effect, rule.Name, fold(rule.When.Text))
		}
	}
	rules(r.Allow)
	rules(r.Deny)
	for _, m := range r.Masks {
		w("mask", m.Column, fold(m.Unless.Text))
	}
	for _, k := range keys(r.Agents) {
		w("agent", k)
		rules(r.Agents[k].Allow)
		rules(r.Agents[k].Deny)
	}
}

func fold(s string) string { return strings.Join(strings.Fields(s), " ") }
