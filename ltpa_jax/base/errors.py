"""The base of the errors a user can fix: the commands print their message alone (`cli`)."""

import errno

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)  # OSError errnos of a full disk (or quota)
# Whether the user asked to see what lies behind an error (--debug or -v 1; set by `cli`): its
# traceback, and the reports libraries leave after it (see `checkpoints`).
verbose = False


class UserError(Exception):
  """A mistake in what a command was given (config, workdir, checkpoint, data); the message
  names the problem and the fix."""
