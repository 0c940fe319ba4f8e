// Package schema holds the JSON Schemas (draft 2020-12) of ragfence's two
// YAML formats, for editors and CI: policy files and policy test files.
//
// Editors that speak the YAML language server protocol pick a schema up
// from a first line such as
//
//	# yaml-language-server: $schema=policy.schema.json
//
// and then complete keys, show each key's description on hover and flag
// unknown keys and wrong types while the file is written. The schemas check
// a file's shape only: the policy loader (policy.Load) and the test runner
// (filter/policytest) still check the SQL in conditions, cross references
// and everything else a schema cannot express.
package schema

import _ "embed"

// Policy is the JSON Schema of a policy file (policy.schema.json). The CLI
// writes it next to the policies it generates, which reference it by their
// first line.
//
//go:embed policy.schema.json
var Policy []byte

// PolicyTest is the JSON Schema of a policy test file, *_test.yaml
// (policy-test.schema.json).
//
//go:embed policy-test.schema.json
var PolicyTest []byte
