package approval_test

import (
	"fmt"
	"time"

	"github.com/ragfence/ragfence/approval"
)

// An approval's status follows the clock: a pending request lapses at its
// end, an approval at the end of its window.
func ExampleApproval_StatusAt() {
	asked := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	req := approval.Approval{Status: approval.StatusPending, RequestedAt: asked, RequestExpiresAt: asked.Add(15 * time.Minute)}
	fmt.Println(req.StatusAt(asked.Add(time.Minute)), req.StatusAt(asked.Add(time.Hour)))

	granted := approval.Approval{Status: approval.StatusApproved, ValidFrom: asked, ValidUntil: asked.Add(30 * time.Minute)}
	fmt.Println(granted.InForce(asked.Add(29*time.Minute)), granted.InForce(asked.Add(30*time.Minute)))
	// Output:
	// pending expired
	// true false
}
