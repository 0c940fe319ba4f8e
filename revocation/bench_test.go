package revocation_test

import (
	"context"
	"testing"

	"github.com/ragfence/ragfence/revocation"
)

// BenchmarkCheck is the lookup every request pays, with 10,000
// revocations in force across 100 tenants: the target is under 1 µs.
func BenchmarkCheck(b *testing.B) {
	dsn, pool := migratedTB(b)
	if _, err := pool.Exec(context.Background(), `INSERT INTO ragfence.revocations (tenant, kind, subject, created_by)
		SELECT 't' || (i % 100), 'subject', 'user-' || i, 'bench' FROM generate_series(1, 5000) i`); err != nil {
		b.Fatal(err)
	}
	if _, err := pool.Exec(context.Background(), `INSERT INTO ragfence.revocations (tenant, kind, agent, subject, created_by)
		SELECT 't' || (i % 100), 'agent', 'agent-' || (i % 50), 'user-' || i, 'bench' FROM generate_series(1, 5000) i`); err != nil {
		b.Fatal(err)
	}
	w := watchTB(b, dsn, revocation.WatchConfig{})
	for _, tc := range []struct {
		name   string
		caller revocation.Caller
		code   revocation.Code
	}{
		{"allowed agent", revocation.Caller{Tenant: "t7", Subject: "user-8", Agent: "agent-3", TokenID: "jti-1"}, ""},
		{"allowed user", revocation.Caller{Tenant: "t7", Subject: "user-8", TokenID: "jti-1"}, ""},
		{"revoked subject", revocation.Caller{Tenant: "t7", Subject: "user-7", TokenID: "jti-1"}, revocation.CodeSubjectRevoked},
	} {
		if got := revocation.CodeOf(w.Check(tc.caller)); got != tc.code {
			b.Fatalf("%s: code %q, want %q", tc.name, got, tc.code)
		}
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				_ = w.Check(tc.caller)
			}
		})
	}
}
