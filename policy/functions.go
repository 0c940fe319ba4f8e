package policy

// Functions are the functions a policy condition may call: pure, built in,
// and cheap. Anything that reads files, settings or other tables, sleeps, or
// depends on the clock (use context.time) is left out on purpose.
var Functions = []string{
	"abs", "array_length", "array_position", "btrim", "cardinality", "ceil", "char_length",
	"date_part", "date_trunc", "extract", "family", "floor", "host", "jsonb_array_length",
	"jsonb_typeof", "left", "length", "lower", "ltrim", "masklen", "network", "right", "round",
	"rtrim", "starts_with", "substr", "substring", "trim", "upper",
}

// allowedOperators are the operators a policy condition may use.
var allowedOperators = map[string]bool{
	"=": true, "<>": true, "!=": true, "<": true, ">": true, "<=": true, ">=": true,
	"+": true, "-": true, "*": true, "/": true, "%": true, "||": true,
	"&&": true, "@>": true, "<@": true, // arrays, jsonb containment
	"->": true, "->>": true, "#>": true, "#>>": true, "?": true, "?|": true, "?&": true, // jsonb
	"~~": true, "!~~": true, "~~*": true, "!~~*": true, // LIKE, ILIKE
	"~": true, "!~": true, "~*": true, "!~*": true, // regular expressions
	"<<": true, "<<=": true, ">>": true, ">>=": true, // inet containment
}

// allowedTypes are the built-in types a condition may cast to.
var allowedTypes = map[string]bool{
	"text": true, "varchar": true, "bpchar": true, "int2": true, "int4": true, "int8": true,
	"integer": true, "int": true, "bigint": true, "smallint": true, "numeric": true,
	"float4": true, "float8": true, "bool": true, "boolean": true, "date": true,
	"timestamp": true, "timestamptz": true, "interval": true, "inet": true, "cidr": true,
	"jsonb": true, "json": true, "uuid": true,
}
