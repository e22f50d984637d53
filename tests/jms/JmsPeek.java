// A plain JMS consumer (ActiveMQ's OpenWire client, as a Java application would use it): takes up to N
// messages from a queue and prints, per message, one line of JSON with what JMS sees. Used by
// tests/integration/test_jms_consumer.py to show that our STOMP SENDs reach JMS as persistent
// TextMessages with the JMSType set.
import javax.jms.*;
import org.apache.activemq.ActiveMQConnectionFactory;

public class JmsPeek {
    static String quote(String s) {
        if (s == null) return "null";
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            if (c == '"' || c == '\\') b.append('\\').append(c);
            else if (c < 0x20) b.append(String.format("\\u%04x", (int) c));
            else b.append(c);
        }
        return b.append('"').toString();
    }

    public static void main(String[] args) throws Exception {
        String url = args[0], queue = args[1];
        int count = Integer.parseInt(args[2]);
        Connection connection = new ActiveMQConnectionFactory(url).createConnection();
        connection.start();
        Session session = connection.createSession(false, Session.AUTO_ACKNOWLEDGE);
        MessageConsumer consumer = session.createConsumer(session.createQueue(queue));
        for (int i = 0; i < count; i++) {
            Message m = consumer.receive(15000);
            if (m == null) break;
            String body = m instanceof TextMessage ? ((TextMessage) m).getText() : null;
            System.out.println("{\"class\": " + quote(m instanceof TextMessage ? "TextMessage" : m.getClass().getSimpleName())
                + ", \"jms_type\": " + quote(m.getJMSType())
                + ", \"persistent\": " + (m.getJMSDeliveryMode() == DeliveryMode.PERSISTENT)
                + ", \"report_id\": " + quote(m.getStringProperty("smsgw-report-id"))
                + ", \"content_type\": " + quote(m.getStringProperty("content-type"))
                + ", \"body\": " + quote(body) + "}");
        }
        connection.close();
    }
}
