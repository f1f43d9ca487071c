-- Reserved: issue 11 (attachments and handling markings) numbers its
-- migrations 0013 and 0014 on its own branch; they replace this file when
-- that branch is merged.
SELECT 1;
