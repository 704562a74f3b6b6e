#!/bin/sh
# Fetches the Converse.js files that /chat serves from the npm registry,
# checks them against the pinned integrity hash, and writes them under
# converse/ with SHA256SUMS. Run from anywhere with npm on PATH:
#
#   internal/webclient/update.sh
#
# To move to another release, set VERSION and INTEGRITY (the "integrity"
# of `npm view converse.js@VERSION dist`), run this, check the page in a
# browser (go test ./interop/ -run Chat), and commit converse/.
set -eu

VERSION=14.0.0
INTEGRITY=sha512-LFUg030jDalV47vI/vyVPqYPZfJYXFbubq8v0cFDe2zXNeeGEk3Up0Fj/WTzT6t+6do+cAIToy73eAj7RNDj2Q==

# Only what /chat needs: the minified bundle and stylesheet, the two fonts
# the stylesheet names, the emoji data, the custom emoji images, and the
# licence. English is built into the bundle; OMEMO (libomemo, GPL-3.0)
# is left out and its plugin switched off.
FILES="
LICENSE
COPYRIGHT
dist/converse.min.js
dist/converse.min.css
dist/emoji.json
dist/webfonts/muli.ttf
dist/webfonts/baumans.ttf
dist/images/favicon.ico
dist/images/custom_emojis/converse.png
dist/images/custom_emojis/xmpp.png
"

here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

(cd "$work" && npm pack --silent "converse.js@$VERSION" >/dev/null)
tarball="$work/converse.js-$VERSION.tgz"
got="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
if [ "$got" != "$INTEGRITY" ]; then
	echo "integrity mismatch for converse.js@$VERSION: got $got, want $INTEGRITY" >&2
	exit 1
fi
tar -xzf "$tarball" -C "$work"

out="$here/converse"
rm -rf "$out"
for f in $FILES; do
	dest="$out/${f#dist/}"
	mkdir -p "$(dirname "$dest")"
	cp "$work/package/$f" "$dest"
done
echo "$VERSION" >"$out/VERSION"
(cd "$out" && find . -type f ! -name SHA256SUMS | sed 's|^\./||' | LC_ALL=C sort | xargs sha256sum >SHA256SUMS)
du -sh "$out"
