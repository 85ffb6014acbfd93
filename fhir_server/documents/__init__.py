"""DMP-style document sharing (IHE MHD as the ANS PDSm guide profiles it): the rules a provide
(ITI-65) and every DocumentReference write obey, registered on the server's `WriteRules` as one
unit rule (`provide.check`): content integrity (`attachments.py`), the provide bundle's shape
(`submission.py`), and the relations between documents (`relations.py`: `replaces` supersedes,
`entered-in-error` restores)."""
