"""The base of the errors a user can fix: the commands print their message alone (`cli`)."""


class UserError(Exception):
  """A mistake in what a command was given (config, workdir, checkpoint, data); the message
  names the problem and the fix."""
