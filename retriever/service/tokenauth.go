package service

import (
	"context"

	"github.com/ragfence/ragfence/retriever/auth"
)

// TokenAuth is the Authenticator of bearer tokens: it verifies them with
// Verifier (keys, issuer, audience, lifetime, claims) and passes on all
// the service needs of the identity.
type TokenAuth struct{ Verifier *auth.Verifier }

// Authenticate verifies the Authorization header's token.
func (a TokenAuth) Authenticate(ctx context.Context, authorization string) (Identity, error) {
	id, err := a.Verifier.Verify(ctx, authorization)
	if err != nil {
		return Identity{}, err
	}
	return Identity{Subject: id.Subject, Agent: id.Agent, PriorActors: id.PriorActors, TokenID: id.TokenID,
		ExpiresAt: id.ExpiresAt, Scopes: id.Scopes}, nil
}
