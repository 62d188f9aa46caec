/*
 * The shell module: runs its "cmd" parameter through the remote user's shell,
 * as Ansible's shell module does.  The command is the user's own shell text:
 * nothing is quoted or interpreted here.
 */
#include <stdio.h>
#include <string.h>

#include <omserver/plugin.h>

static const struct om_plugin_param shell_params[] = {
        {"cmd", "string", 1, NULL, "shell command line to run on each host"},
};

static int
shell_remote_command(const struct om_plugin_args *args, char *out, size_t cap, char *err,
                     size_t errlen)
{
	size_t i, len;

	for (i = 0; i < args->n; i++) {
		if (strcmp(args->keys[i], "cmd") != 0)
			continue;
		len = strlen(args->vals[i]);
		if (len == 0) {
			snprintf(err, errlen, "parameter 'cmd' is empty");
			return -1;
		}
		if (len >= cap) {
			snprintf(err, errlen, "parameter 'cmd' is too long (%zu bytes)", len);
			return -5;
		}
		memcpy(out, args->vals[i], len + 1);
		return 0;
	}
	snprintf(err, errlen, "missing required parameter 'cmd'");
	return -1;
}

static const struct om_plugin shell_plugin = {
        .magic = OM_PLUGIN_MAGIC,
        .abi_major = OM_PLUGIN_ABI_MAJOR,
        .abi_minor = OM_PLUGIN_ABI_MINOR,
        .struct_size = sizeof(struct om_plugin),
        .name = "shell",
        .version = "0.1.0",
        .description = "run a command line through the remote shell",
        .params = shell_params,
        .nparams = sizeof(shell_params) / sizeof(shell_params[0]),
        .remote_command = shell_remote_command,
};

OM_PLUGIN_DECLARE(shell_plugin)
