# pkg_version VERSION prints VERSION as a package version that dpkg and rpm
# both accept and order sensibly. Sourced by build.sh and check.sh.
#   v1.2.3                     -> 1.2.3
#   v1.2.3-rc.1                -> 1.2.3~rc.1        (a pre-release sorts before 1.2.3)
#   v1.2.3-4-gabc1234[-dirty]  -> 1.2.3+git4.abc1234[.dirty] (after 1.2.3)
#   dev, abc1234[-dirty]       -> 0.0.0~dev, 0.0.0~gabc1234[.dirty]
# Only [0-9A-Za-z.+~] survive: no "-" (dpkg's revision separator, forbidden
# in an rpm version) and no "_".
pkg_version() {
	printf '%s\n' "$1" | sed -E '
		s/^([0-9a-f]*[a-f][0-9a-f]*)(-dirty)?$/0.0.0~g\1\2/
		t clean
		s/^v?([0-9]+(\.[0-9]+)*)/\1/
		t num
		s/^/0.0.0~/
		b clean
		:num
		s/^([0-9]+(\.[0-9]+)*)-([0-9]+)-g([0-9a-f]+)/\1+git\3.\4/
		t clean
		s/^([0-9]+(\.[0-9]+)*)-/\1~/
		:clean
		s/[^0-9A-Za-z.+~]+/./g
		s/\.+$//
	'
}
