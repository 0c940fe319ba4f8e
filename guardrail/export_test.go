package guardrail

import "context"

// SyncNow syncs at once, for tests that step the protocol by hand.
func (e *Engine) SyncNow(ctx context.Context) error { return e.syncOnce(ctx) }

// Prune prunes at once.
func (e *Engine) Prune(ctx context.Context) error { return e.prune(ctx) }
