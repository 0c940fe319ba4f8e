package doctor_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/ragfence/ragfence/internal/doctor"
)

var sample = doctor.Report{Findings: []doctor.Finding{
	{Severity: doctor.OK, Code: doctor.CodePgvector, Message: "pgvector 0.8.2"},
	{Severity: doctor.OK, Resource: "chunks", Code: doctor.CodeVectorIndex, Message: "chunks_embedding_idx (hnsw, vector_cosine_ops) serves ORDER BY embedding <=> ..."},
	{Severity: doctor.Warning, Resource: "chunks", Code: doctor.CodeAnalyze, Message: "table chunks has never been analyzed", Fix: "ANALYZE chunks"},
}}

func ExampleReport_WriteText() {
	_ = sample.WriteText(os.Stdout)
	// Output:
	// server:
	//   ok       pgvector          pgvector 0.8.2
	//
	// resource chunks:
	//   ok       vector_index      chunks_embedding_idx (hnsw, vector_cosine_ops) serves ORDER BY embedding <=> ...
	//   warning  analyze           table chunks has never been analyzed; run: ANALYZE chunks
	//
	// 0 error(s), 1 warning(s), 2 ok
}

func ExampleLogFindings() {
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{} // stable output
			}
			return a
		},
	}))
	doctor.LogFindings(logger, sample)
	fmt.Print(strings.ReplaceAll(logs.String(), `hint="ragfence doctor --db URL --policy FILE prints the full report"`, "hint=..."))
	// Output:
	// level=WARN msg="doctor: table chunks has never been analyzed" code=analyze resource=chunks fix="ANALYZE chunks"
	// level=INFO msg="doctor: database checked against the policy" errors=0 warnings=1 hint=...
}
