"""R4 Subscriptions, rest-hook channel: every committed version matched against the active
Subscriptions, within their owner's reach, and delivered at least once, in order, by one worker."""
