package rewrite

// trustedFunctions may appear in application SQL (Trusted mode): read-only
// built-ins without side effects or access to anything but their arguments.
// Everything else (set_config, current_setting, pg_sleep, pg_read_file,
// lo_*, dblink*, user-defined functions) is refused.
var trustedFunctions = union(aggregateFunctions, windowFunctions, setOf(
	// scalar
	"abs", "ceil", "ceiling", "floor", "round", "trunc", "greatest", "least", "coalesce", "nullif",
	"length", "char_length", "lower", "upper", "btrim", "ltrim", "rtrim", "trim", "substr", "substring",
	"left", "right", "replace", "concat", "concat_ws", "starts_with", "position", "strpos", "split_part",
	"array_length", "array_position", "cardinality",
	"jsonb_typeof", "jsonb_array_length", "jsonb_build_object", "jsonb_build_array", "to_jsonb",
	"jsonb_extract_path_text", "jsonb_extract_path",
	"date_trunc", "date_part", "extract", "now", "make_interval", "to_char", "age",
	// pgvector
	"cosine_distance", "l2_distance", "inner_product", "l1_distance", "vector_dims", "vector_norm", "l2_normalize",
))

// aggregateFunctions are the allowlisted aggregates: a statement calling
// one reads every row it aggregates.
var aggregateFunctions = setOf("count", "sum", "avg", "min", "max", "array_agg", "string_agg", "jsonb_agg", "json_agg",
	"jsonb_object_agg", "bool_and", "bool_or", "every", "stddev", "variance")

// strictFunctions may appear in untrusted SQL (Strict mode): functions that
// cannot raise an error whatever the row holds, so a predicate cannot reveal
// a hidden row through an error before the policy filters it out.
var strictFunctions = setOf(
	"count", "coalesce", "greatest", "least", "lower", "upper", "length", "char_length",
	"cosine_distance", "l2_distance", "inner_product", "l1_distance",
	"min", "max", "array_agg", "jsonb_typeof", "cardinality", "row_number", "rank", "dense_rank",
)

// strictOperators cannot fail on data of the types they apply to. Division,
// modulo, casts and arithmetic that can overflow are not among them.
var strictOperators = setOf(
	"=", "<>", "!=", "<", ">", "<=", ">=",
	"<=>", "<->", "<#>", "<+>", // pgvector distances (raise on other dimensions: see own)
	"->>", "->", "&&", "@>", "<@", "?", // not ||: arrays of different dimensions raise
	"~~", "!~~", "~~*", "!~~*", // LIKE with a constant pattern (checked)
)

func union(sets ...map[string]bool) map[string]bool {
	out := map[string]bool{}
	for _, s := range sets {
		for k := range s {
			out[k] = true
		}
	}
	return out
}

func setOf(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

// windowFunctions are the allowlisted window functions.
var windowFunctions = setOf("row_number", "rank", "dense_rank", "percent_rank", "cume_dist", "ntile", "lag", "lead",
	"first_value", "last_value")

// distanceFunctions are pgvector's distances as functions: they raise when
// the two vectors' dimensions differ.
var distanceFunctions = setOf("cosine_distance", "l2_distance", "inner_product", "l1_distance")

// leakproofFunctions cannot raise an error whatever their arguments hold,
// so they may stand in a condition the planner evaluates before the
// policy. Functions that can (abs of the smallest integer, substr with a
// negative length, split_part of field 0, jsonb_array_length of a scalar,
// date_trunc of an unknown unit, and whatever can grow a value past
// PostgreSQL's size limits: replace, concat, to_jsonb, ...) are not among
// them.
var leakproofFunctions = setOf(
	"count", "coalesce", "greatest", "least", "lower", "upper", "length", "char_length",
	"btrim", "ltrim", "rtrim", "starts_with", "strpos", "position",
	"left", "right", "array_length", "cardinality", "jsonb_typeof", "jsonb_extract_path",
	"jsonb_extract_path_text", "now", "vector_dims", "vector_norm", "l2_normalize",
)
