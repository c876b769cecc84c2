-- An API token may belong to a console user (`token create --user NAME`): it then works only
-- while that user exists and is enabled, with no more than the user's role allows. NULL: a
-- service token that belongs to no user (it ends only by revocation or expiry).
ALTER TABLE api_tokens ADD COLUMN user_name TEXT;
