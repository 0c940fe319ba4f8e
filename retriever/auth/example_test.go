package auth_test

import (
	"context"
	"fmt"
	"time"

	"github.com/ragfence/ragfence/retriever/auth"
)

// Mint a development token for a user and the agent acting for them, then
// verify it as the retriever would, with a fixed clock.
func Example() {
	ctx := context.Background()
	secret := []byte("dev-secret-dev-secret-dev-secret") // at least 32 bytes
	issued := time.Date(2025, 6, 1, 9, 0, 0, 0, time.UTC)

	tok, err := auth.Mint(secret, auth.MintClaims{
		Subject:    "alice",
		Tenant:     "acme",
		Roles:      []string{"analyst"},
		Attributes: map[string]any{"clearance": 3},
		Agent:      "support-bot",
		Lifetime:   5 * time.Minute,
		IssuedAt:   issued,
	})
	if err != nil {
		panic(err)
	}

	clock := issued.Add(time.Minute)
	v, err := auth.New(ctx, auth.Config{
		HMACSecret: secret,
		Attributes: []string{"clearance"},
		Now:        func() time.Time { return clock },
	})
	if err != nil {
		panic(err)
	}
	defer v.Close()

	id, err := v.Verify(ctx, "Bearer "+tok)
	if err != nil {
		panic(err)
	}
	fmt.Println(id.Subject.ID, id.Subject.Tenant, id.Subject.Roles, "via", id.Agent)
	fmt.Printf("clearance %v (%T), expires %s\n", id.Subject.Attributes["clearance"], id.Subject.Attributes["clearance"], id.ExpiresAt.Format(time.Kitchen))

	clock = issued.Add(10 * time.Minute)
	_, err = v.Verify(ctx, "Bearer "+tok)
	fmt.Println(auth.CodeOf(err)+":", err)
	// Output:
	// alice acme [analyst] via support-bot
	// clearance 3 (json.Number), expires 9:05AM
	// expired: token has expired
}
