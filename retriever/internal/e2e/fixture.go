// Package e2e is the end-to-end fixture of the retriever's tests (the
// library's, the service's and the HTTP front door's): one seeded demo
// database per test binary, the masked demo policy, a verifier and tokens,
// and oracles that restate the policy in plain SQL to check answers
// against.
//
// Every test package that uses it runs its tests through Main. The tests of
// a package share the database and do not run in parallel: one of them
// terminates the database's connections.
package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ragfence/ragfence/filter"
	"github.com/ragfence/ragfence/internal/demo"
	"github.com/ragfence/ragfence/internal/pgpool"
	"github.com/ragfence/ragfence/internal/testdb"
	"github.com/ragfence/ragfence/policy"
	"github.com/ragfence/ragfence/retriever/auth"
)

// FixedNow is every test clock: the verifier's, the server's and the
// tokens' iat. It is far from the real time on purpose, so a mix-up of the
// injected clock and the wall clock shows.
var FixedNow = time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC)

// Secret signs every test token.
var Secret = []byte("ragfence-e2e-secret-0123456789-abcdefghijklmnop")

// MaskedPolicy is the demo policy plus a mask on metadata, so a column the
// response carries is masked for subjects without pii-reader.
var MaskedPolicy = strings.Replace(string(demo.Policy),
	"    mask:\n",
	"    mask:\n      - column: metadata\n        unless: \"'pii-reader' = ANY (subject.roles)\"\n", 1)

// Fixture is the shared database and what every server is built from.
type Fixture struct {
	DSN      string
	Pool     *pgxpool.Pool
	Data     *demo.Dataset
	Policy   *filter.Policy
	Verifier *auth.Verifier
}

var (
	fixtureOnce sync.Once
	shared      *Fixture
	fixtureErr  error  // setup failed: every test fails
	fixtureSkip string // no database: every test skips (testdb decides)
	setupTB     = &mainTB{}
)

// Main runs a package's tests, then the fixture's cleanups; a TestMain
// calls os.Exit(e2e.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	setupTB.cleanup()
	return code
}

// Shared returns the shared fixture, set up by the first test or benchmark
// that asks.
func Shared(t testing.TB) *Fixture {
	t.Helper()
	fixtureOnce.Do(func() {
		start := time.Now()
		shared, fixtureSkip, fixtureErr = setupTB.run(newFixture)
		t.Logf("shared fixture ready in %s", time.Since(start).Round(time.Millisecond))
	})
	switch {
	case fixtureSkip != "":
		t.Skip(fixtureSkip)
	case fixtureErr != nil:
		t.Fatalf("shared fixture: %v", fixtureErr)
	}
	return shared
}

func newFixture(tb testing.TB) *Fixture {
	ctx := context.Background()
	f := &Fixture{DSN: testdb.Database(tb)}
	conn, err := pgx.Connect(ctx, f.DSN)
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := pgpool.RegisterVector(ctx, conn); err != nil {
		tb.Fatal(err)
	}
	if f.Data, _, err = demo.Seed(ctx, conn, demo.Config{Chunks: 4000}, true); err != nil {
		tb.Fatal(err)
	}
	if f.Pool, err = NewPool(f.DSN, 8); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(f.Pool.Close)
	if f.Policy, err = CompileMaskedPolicy(); err != nil {
		tb.Fatal(err)
	}
	f.Verifier, err = auth.New(ctx, auth.Config{HMACSecret: Secret, Now: func() time.Time { return FixedNow }, Attributes: []string{"clearance"}})
	if err != nil {
		tb.Fatal(err)
	}
	return f
}

// NewPool is a pool on dsn that knows pgvector's types; maxConns 0 keeps
// pgxpool's default.
func NewPool(dsn string, maxConns int32) (*pgxpool.Pool, error) {
	cfg, err := pgpool.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	return pgxpool.NewWithConfig(context.Background(), cfg)
}

// CompileMaskedPolicy compiles MaskedPolicy, without a database.
func CompileMaskedPolicy() (*filter.Policy, error) {
	if MaskedPolicy == string(demo.Policy) {
		return nil, errors.New("the demo policy has no mask list to add the metadata mask to")
	}
	set, err := policy.Parse(policy.Source{Name: "demo-masked.yaml", Data: []byte(MaskedPolicy)})
	if err != nil {
		return nil, err
	}
	return filter.Compile(set)
}

// mainTB lets the shared fixture use testdb, which takes a testing.TB, from
// outside any one test: cleanups run after every test, Fatal and Skip end
// the setup. Only the methods testdb and newFixture call are implemented.
type mainTB struct {
	testing.TB // nil; never called
	mu         sync.Mutex
	cleanups   []func()
}

type setupFatal struct{ msg string }
type setupSkip struct{ msg string }

func (*mainTB) Helper()                      {}
func (*mainTB) Fatal(args ...any)            { panic(setupFatal{fmt.Sprint(args...)}) }
func (*mainTB) Fatalf(f string, args ...any) { panic(setupFatal{fmt.Sprintf(f, args...)}) }
func (*mainTB) Skip(args ...any)             { panic(setupSkip{fmt.Sprint(args...)}) }
func (*mainTB) Errorf(f string, args ...any) {
	fmt.Fprintf(os.Stderr, "fixture cleanup: "+f+"\n", args...)
}

func (m *mainTB) Cleanup(f func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cleanups = append(m.cleanups, f)
}

// run calls setup, turning its Fatal and Skip into results.
func (m *mainTB) run(setup func(testing.TB) *Fixture) (f *Fixture, skip string, err error) {
	defer func() {
		switch r := recover().(type) {
		case nil:
		case setupFatal:
			err = errors.New(r.msg)
		case setupSkip:
			skip = r.msg
		default:
			panic(r)
		}
	}()
	return setup(m), "", nil
}

// cleanup runs the cleanups, last first, as testing does.
func (m *mainTB) cleanup() {
	m.mu.Lock()
	fs := m.cleanups
	m.cleanups = nil
	m.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		func() {
			defer func() {
				if r := recover(); r != nil {
					fmt.Fprintf(os.Stderr, "fixture cleanup: %v\n", r)
				}
			}()
			fs[i]()
		}()
	}
}
