// Package demo generates and seeds ragfence's deterministic demo knowledge
// base (three tenants, a few dozen users, 20,000 chunks with clustered
// synthetic embeddings and varied ACLs) and the policy that protects it.
package demo

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
	pgvector "github.com/pgvector/pgvector-go"

	"github.com/ragfence/ragfence/sqlc/store"
)

// Config sizes the demo dataset; the zero value of a field means its default.
type Config struct {
	Seed      uint64
	Chunks    int // total chunks, spread over documents of ChunksPerDoc
	Dimension int
	// PartitionByTenant has Seed create the knowledge base partitioned by
	// tenant (migrations.Options.PartitionByTenant) when it creates it; the
	// rows are the same either way.
	PartitionByTenant bool
}

const (
	defaultChunks  = 20000
	chunksPerDoc   = 10
	defaultDim     = 384
	numTopics      = 40
	clusterSpread  = 0.55 // noise norm relative to the (unit) cluster centre
	usersPerTenant = 10
)

func (c Config) withDefaults() Config {
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.Chunks == 0 {
		c.Chunks = defaultChunks
	}
	if c.Dimension == 0 {
		c.Dimension = defaultDim
	}
	return c
}

// Dataset is everything the demo inserts.
type Dataset struct {
	Tenants   []store.Tenant
	Users     []store.InsertUsersParams
	Documents []store.InsertDocumentsParams
	Grants    []store.InsertDocumentGrantsParams
	Chunks    []store.InsertChunksParams
	// Topics[i] is the centre of cluster i, for query vectors near a topic.
	Topics []Topic
}

// Topic is one cluster of the synthetic embedding space.
type Topic struct {
	Name   string
	Centre []float32
}

var tenants = []store.Tenant{{ID: "acme", Name: "Acme Corp"}, {ID: "globex", Name: "Globex"}, {ID: "initech", Name: "Initech"}}

// tenantShare is each tenant's share of the documents.
var tenantShare = []float64{0.5, 0.3, 0.2}

var (
	groups     = []string{"eng", "sales", "hr", "legal", "finance"}
	sources    = []string{"wiki", "slack", "drive", "jira"}
	langs      = []string{"en", "en", "en", "de", "fr"}
	topicWords = []string{
		"onboarding", "billing", "security", "roadmap", "hiring", "pricing", "incident", "vacation",
		"expenses", "architecture", "database", "release", "contracts", "compliance", "benefits", "marketing",
		"support", "payroll", "travel", "kubernetes", "observability", "sales-playbook", "legal-review", "okrs",
		"interviews", "quarterly-report", "customer-churn", "api-design", "data-retention", "backups",
		"performance", "accessibility", "localization", "partnerships", "procurement", "offsite", "training",
		"on-call", "mobile-app", "search",
	}
)

// Generate builds the dataset from cfg alone: the same cfg gives the same rows.
func Generate(cfg Config) *Dataset {
	cfg = cfg.withDefaults()
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x5eed))
	d := &Dataset{Tenants: tenants}
	d.Users = users()
	d.Topics = topics(rng, cfg.Dimension)
	base := time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC)
	numDocs := (cfg.Chunks + chunksPerDoc - 1) / chunksPerDoc
	for i := range numDocs {
		doc := document(rng, d.Users, int64(i+1), base)
		d.Documents = append(d.Documents, doc)
		d.Grants = append(d.Grants, grants(rng, d.Users, doc)...)
		for j := range chunksPerDoc {
			if len(d.Chunks) == cfg.Chunks {
				break
			}
			d.Chunks = append(d.Chunks, chunk(rng, d, doc, j))
		}
	}
	return d
}

// users returns usersPerTenant users per tenant; the first few of acme are
// the named users of the README, with fixed attributes.
func users() []store.InsertUsersParams {
	named := []store.InsertUsersParams{
		{ID: "alice", TenantID: "acme", Name: "Alice", Roles: []string{"editor"}, Groups: []string{"eng"}, Clearance: 2},
		{ID: "bob", TenantID: "acme", Name: "Bob", Roles: []string{"viewer"}, Groups: []string{"sales"}, Clearance: 1},
		{ID: "carol", TenantID: "acme", Name: "Carol", Roles: []string{"admin", "pii-reader"}, Groups: []string{"hr", "legal"}, Clearance: 3},
		{ID: "dave", TenantID: "globex", Name: "Dave", Roles: []string{"editor"}, Groups: []string{"eng"}, Clearance: 2},
		{ID: "erin", TenantID: "initech", Name: "Erin", Roles: []string{"viewer"}, Groups: []string{"finance"}, Clearance: 1},
	}
	out := append([]store.InsertUsersParams(nil), named...)
	perTenant := map[string]int{}
	for _, u := range named {
		perTenant[u.TenantID]++
	}
	for ti, t := range tenants {
		for i := perTenant[t.ID]; i < usersPerTenant; i++ {
			n := len(out)
			out = append(out, store.InsertUsersParams{
				ID:        fmt.Sprintf("%s-user%02d", t.ID, i),
				TenantID:  t.ID,
				Name:      fmt.Sprintf("%s user %d", t.Name, i),
				Roles:     []string{[]string{"viewer", "editor"}[n%2]},
				Groups:    []string{groups[(n+ti)%len(groups)]},
				Clearance: int32(n % 4),
			})
		}
	}
	return out
}

func topics(rng *rand.Rand, dim int) []Topic {
	out := make([]Topic, numTopics)
	for i := range out {
		out[i] = Topic{Name: topicWords[i%len(topicWords)], Centre: unit(gaussian(rng, dim))}
	}
	return out
}

func document(rng *rand.Rand, us []store.InsertUsersParams, id int64, base time.Time) store.InsertDocumentsParams {
	tenant := pickTenant(rng)
	owner := pickUser(rng, us, tenant)
	vis, acl := visibility(rng)
	topic := rng.IntN(numTopics)
	year := 2021 + rng.IntN(6)
	meta, _ := json.Marshal(map[string]any{"lang": langs[rng.IntN(len(langs))], "year": year, "topic": topicWords[topic]})
	return store.InsertDocumentsParams{
		ID:             id,
		TenantID:       tenant,
		OwnerID:        owner.ID,
		Title:          fmt.Sprintf("%s %s notes #%d", tenant, topicWords[topic], id),
		Source:         sources[rng.IntN(len(sources))],
		Visibility:     vis,
		AclGroups:      acl,
		Classification: classification(rng),
		CreatedAt:      pgtype.Timestamptz{Time: base.Add(time.Duration(rng.IntN(5*365*24)) * time.Hour), Valid: true},
		Metadata:       meta,
	}
}

func pickTenant(rng *rand.Rand) string {
	x := rng.Float64()
	for i, share := range tenantShare {
		if x < share {
			return tenants[i].ID
		}
		x -= share
	}
	return tenants[len(tenants)-1].ID
}

func pickUser(rng *rand.Rand, us []store.InsertUsersParams, tenant string) store.InsertUsersParams {
	var of []store.InsertUsersParams
	for _, u := range us {
		if u.TenantID == tenant {
			of = append(of, u)
		}
	}
	return of[rng.IntN(len(of))]
}

// visibility: 40% of documents are tenant-wide, 35% shared with one or two
// groups, 25% private to their owner (and whoever they grant).
func visibility(rng *rand.Rand) (string, []string) {
	switch x := rng.Float64(); {
	case x < 0.40:
		return "tenant", []string{}
	case x < 0.75:
		acl := []string{groups[rng.IntN(len(groups))]}
		if rng.IntN(3) == 0 {
			if g := groups[rng.IntN(len(groups))]; g != acl[0] {
				acl = append(acl, g)
			}
		}
		return "group", acl
	default:
		return "private", []string{}
	}
}

// classification: 0 public-internal (60%), 1 (25%), 2 (10%), 3 secret (5%).
func classification(rng *rand.Rand) int32 {
	switch x := rng.Float64(); {
	case x < 0.60:
		return 0
	case x < 0.85:
		return 1
	case x < 0.95:
		return 2
	default:
		return 3
	}
}

// grants shares a third of private documents with one to three colleagues.
func grants(rng *rand.Rand, us []store.InsertUsersParams, doc store.InsertDocumentsParams) []store.InsertDocumentGrantsParams {
	if doc.Visibility != "private" || rng.IntN(3) != 0 {
		return nil
	}
	seen := map[string]bool{doc.OwnerID: true}
	var out []store.InsertDocumentGrantsParams
	for range 1 + rng.IntN(3) {
		u := pickUser(rng, us, doc.TenantID)
		if seen[u.ID] {
			continue
		}
		seen[u.ID] = true
		out = append(out, store.InsertDocumentGrantsParams{TenantID: doc.TenantID, DocumentID: doc.ID, UserID: u.ID, Permission: "read"})
	}
	return out
}

func chunk(rng *rand.Rand, d *Dataset, doc store.InsertDocumentsParams, part int) store.InsertChunksParams {
	var meta struct {
		Topic string `json:"topic"`
	}
	_ = json.Unmarshal(doc.Metadata, &meta)
	topic := topicIndex(meta.Topic)
	vec := make([]float32, len(d.Topics[topic].Centre))
	noise := unit(gaussian(rng, len(vec)))
	for i := range vec {
		vec[i] = d.Topics[topic].Centre[i] + clusterSpread*noise[i]
	}
	var email pgtype.Text
	if rng.IntN(10) < 3 {
		email = pgtype.Text{String: fmt.Sprintf("%s@%s.example", doc.OwnerID, doc.TenantID), Valid: true}
	}
	return store.InsertChunksParams{
		ID:             (doc.ID-1)*chunksPerDoc + int64(part) + 1,
		TenantID:       doc.TenantID,
		DocumentID:     doc.ID,
		OwnerID:        doc.OwnerID,
		Visibility:     doc.Visibility,
		AclGroups:      doc.AclGroups,
		Classification: doc.Classification,
		Source:         doc.Source,
		Content:        fmt.Sprintf("%s, part %d: %s notes from %s (%s)", doc.Title, part+1, meta.Topic, doc.Source, doc.TenantID),
		ContactEmail:   email,
		Metadata:       doc.Metadata,
		CreatedAt:      doc.CreatedAt,
		Embedding:      pgvector.NewVector(unit(vec)),
	}
}

func topicIndex(name string) int {
	for i, w := range topicWords[:numTopics] {
		if w == name {
			return i
		}
	}
	return 0
}

func gaussian(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}

func unit(v []float32) []float32 {
	var sum float64
	for _, x := range v {
		sum += float64(x) * float64(x)
	}
	n := float32(math.Sqrt(sum))
	for i := range v {
		v[i] /= n
	}
	return v
}
