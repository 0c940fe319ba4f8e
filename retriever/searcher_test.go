package retriever

import "testing"

// NewSearcher refuses a template cache it cannot build, rather than
// searching without one.
func TestNewSearcherRefusesANegativeCache(t *testing.T) {
	if _, err := NewSearcher(Config{Templates: -1}); err == nil {
		t.Error("NewSearcher(Templates: -1) succeeded")
	}
	if s, err := NewSearcher(Config{}); err != nil || s.templates == nil {
		t.Errorf("NewSearcher(Config{}): %v", err)
	}
}
