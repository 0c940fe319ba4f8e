package retriever_test

import (
	"os"
	"testing"

	"github.com/ragfence/ragfence/retriever/internal/e2e"
)

// The library's tests share one seeded database per test binary (see
// package e2e).
func TestMain(m *testing.M) { os.Exit(e2e.Main(m)) }
