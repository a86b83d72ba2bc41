# shellcheck shell=bash
# render: the daemons' configuration files from their templates under templates/, with envsubst
# (Debian's gettext-base) replacing only the variables each call names.
# Expects (harness.sh): E2E_DIR, die.

# render TEMPLATE NAME|NAME=VALUE...: templates/TEMPLATE on stdout with each ${NAME} replaced by
# VALUE, or by the shell variable NAME's value. Only the names given are replaced (envsubst's
# SHELL-FORMAT list), and a template that names any other ${...} is an error, so no placeholder
# reaches a daemon unreplaced.
render() {
	local tmpl=$E2E_DIR/templates/$1 arg name env=() names=() unknown
	shift
	for arg in "$@"; do
		if [[ $arg == *=* ]]; then
			name=${arg%%=*}
			env+=("$arg")
		else
			name=$arg
			env+=("$name=${!name}")
		fi
		names+=("\${$name}")
	done
	# shellcheck disable=SC2016 # a literal ${NAME}, as the templates write it
	unknown=$(grep -o '\${[A-Za-z_][A-Za-z0-9_]*}' "$tmpl" | sort -u | grep -vxF -f <(printf '%s\n' "${names[@]}") || true)
	[[ -z $unknown ]] || die "templates/${tmpl##*/} names $(echo "$unknown" | tr '\n' ' ')which render was not given"
	env "${env[@]}" envsubst "${names[*]}" <"$tmpl"
}
