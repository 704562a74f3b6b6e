package wellformedtest

// NotWellFormed are stanzas encoding/xml accepts that are not
// namespace-well-formed: each must end the sender's stream and reach no
// one. The reader's tests read them and the socket tests send them to a
// server: format strings taking the receiver's address.
var NotWellFormed = map[string]string{
	"duplicate attribute":              `<message to='%s'><x xmlns='urn:x' a='1' a='2'/></message>`,
	"duplicate expanded name":          `<message to='%s'><x xmlns:p='urn:u' xmlns:q='urn:u' p:a='1' q:a='2'/></message>`,
	"duplicate to":                     `<message to='%s' to='%[1]s'><body>x</body></message>`,
	"duplicate declaration":            `<message to='%s'><x xmlns:p='urn:a' xmlns:p='urn:b'/></message>`,
	"undeclared prefix":                `<message to='%s'><p:x/></message>`,
	"undeclared attribute prefix":      `<message to='%s'><x p:a='1'/></message>`,
	"prefix out of scope":              `<message to='%s'><x xmlns:p='urn:p'/><p:y/></message>`,
	"xml rebound":                      `<message to='%s'><x xmlns:xml='urn:bad'/></message>`,
	"xmlns declared":                   `<message to='%s'><x xmlns:xmlns='urn:x'/></message>`,
	"prefix bound to the xml name":     `<message to='%s'><x xmlns:p='http://www.w3.org/XML/1998/namespace'/></message>`,
	"prefix bound to the xmlns name":   `<message to='%s'><x xmlns:p='http://www.w3.org/2000/xmlns/'/></message>`,
	"default bound to the xml name":    `<message to='%s'><x xmlns='http://www.w3.org/XML/1998/namespace'/></message>`,
	"prefix undeclared (NS 1.1 only)":  `<message to='%s'><x xmlns:p=''/></message>`,
	"element with prefix xmlns":        `<message to='%s'><xmlns:x/></message>`,
	"colon first":                      `<message to='%s'><:x/></message>`,
	"colon last":                       `<message to='%s'><x: xmlns:x='urn:x'/></message>`,
	"local part starts with a digit":   `<message to='%s'><p:1x xmlns:p='urn:p'/></message>`,
	"local part starts with a mark":    "<message to='%s'><p:\u0301x xmlns:p='urn:p'/></message>",
	"namespace name with a space":      `<message to='%s'><x xmlns='urn: x'/></message>`,
	"namespace name with a brace":      `<message to='%s'><x xmlns='urn:}x'/></message>`,
	"namespace name not ASCII":         `<message to='%s'><x xmlns='urn:é'/></message>`,
	"surrogate reference in text":      `<message to='%s'><body>&#xD800;</body></message>`,
	"surrogate reference in attribute": `<message to='%s'><x xmlns='urn:x' a='&#56320;'/></message>`,
	"reference to NUL":                 `<message to='%s'><body>&#0;</body></message>`,
	"reference to a control character": `<message to='%s'><body>&#x1;</body></message>`,
	"reference to U+FFFE":              `<message to='%s'><body>&#xFFFE;</body></message>`,
	"reference beyond Unicode":         `<message to='%s'><body>&#x110000;</body></message>`,
	"raw control character":            "<message to='%s'><body>\x01</body></message>",
	"raw U+FFFE":                       "<message to='%s'><body>\uFFFE</body></message>",
	"raw U+FFFF":                       "<message to='%s'><x xmlns='urn:x' a='\uFFFF'/></message>",
	"no space between attributes":      `<message to='%s'><x xmlns='urn:x' a='1'b='2'/></message>`,
	"stray end tag":                    `</message>%.0s`,
}
