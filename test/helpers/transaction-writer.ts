/**
 * A second process writing to the test's database: `count` transactions that each read the table
 * `process_writes`, wait a moment (long enough for another process to commit meanwhile) and then insert
 * a row of their own. Prints one line of JSON: how many committed and the errors of those that did not.
 */
import { sql } from "kysely";
import { openStorage } from "../../src/db/database.js";

const [url, tag, count] = process.argv.slice(2) as [string, string, string];
const storage = openStorage(url);
let committed = 0;
const errors: string[] = [];
for (let i = 0; i < Number(count); i++) {
  try {
    await storage.db.transaction().execute(async (trx) => {
      await sql`select count(*) as n from process_writes`.execute(trx);
      await new Promise((resolve) => setTimeout(resolve, 2));
      await sql`insert into process_writes (id) values (${`${tag}-${i}`})`.execute(trx);
    });
    committed += 1;
  } catch (error) {
    errors.push(`${(error as { code?: string }).code ?? ""} ${(error as Error).message}`);
  }
}
await storage.close();
console.log(JSON.stringify({ committed, errors }));
