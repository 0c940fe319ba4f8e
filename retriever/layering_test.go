package retriever_test

import (
	"go/build"
	"slices"
	"testing"
)

// TestLayering holds the packages' dependencies pointing one way, httpapi
// -> service -> retriever: the library carries no HTTP, metrics,
// authentication, audit or embedding, and the service no HTTP, so a second
// front door needs neither Echo nor the first door's handler.
func TestLayering(t *testing.T) {
	const mod = "github.com/ragfence/ragfence/retriever"
	httpPkgs := []string{"net/http", "github.com/labstack/echo/v4", mod + "/httpapi"}
	for dir, banned := range map[string][]string{
		".": append([]string{"github.com/prometheus/client_golang/prometheus",
			mod + "/audit", mod + "/auth", mod + "/embed", mod + "/service"}, httpPkgs...),
		"service": httpPkgs,
	} {
		pkg, err := build.ImportDir(dir, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range pkg.Imports {
			if slices.Contains(banned, imp) {
				t.Errorf("the package in %q imports %s", dir, imp)
			}
		}
	}
}
